"""lstm-bptt: LSTM sequence models in NumPy with hand-written backpropagation through time."""

from .bptt import lstm_backward
from .cell import lstm_cell_backward, lstm_cell_forward
from .gradcheck import gradcheck, numerical_gradient, rel_error
from .layers import LSTM, Embedding, Linear, dropout_backward, dropout_forward
from .losses import mse_loss, softmax_cross_entropy
from .lstm import lstm_forward

__version__ = "0.1.0"

__all__ = [
    "LSTM",
    "Embedding",
    "Linear",
    "dropout_backward",
    "dropout_forward",
    "gradcheck",
    "lstm_backward",
    "lstm_cell_backward",
    "lstm_cell_forward",
    "lstm_forward",
    "mse_loss",
    "numerical_gradient",
    "rel_error",
    "softmax_cross_entropy",
]
