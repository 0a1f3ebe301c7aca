"""lstm-bptt: LSTM sequence models in NumPy with hand-written backpropagation through time.

Parameter names, shapes and gate orders follow PyTorch's ``nn.LSTM`` (i, f, g, o), ``nn.GRU``
(r, z, n) and ``nn.RNN``. Every forward
returns a cache and stores nothing; every backward is written by hand and consumes the cache.
"""

import sys as _sys

if _sys.argv[:1] == ["-m"] or _sys.argv[0].endswith("lstm-bptt"):
    # Started as the command (python -m lstm_bptt, or the console script): a Ctrl-C or SIGTERM
    # while the modules load exits at once with one line instead of an import traceback;
    # the command's main() then installs its own handling.
    import os as _os
    import signal as _signal

    def _quiet_exit(signum, frame):
        _sys.stderr.write("\nlstm-bptt: interrupted\n")
        _os._exit(128 + signum)

    _signal.signal(_signal.SIGINT, _quiet_exit)
    _signal.signal(_signal.SIGTERM, _quiet_exit)

from ._fast import fast_path_enabled, set_fast_path  # noqa: E402
from ._memory import set_recycling  # noqa: E402
from .cells import CELLS, Cell, GRUCell, LSTMCell, RNNCell, get_cell  # noqa: E402
from .cells.gru import gru_backward, gru_forward, gru_step_backward, gru_step_forward  # noqa: E402
from .cells.lstm import (
    lstm_backward,
    lstm_cell_backward,
    lstm_cell_forward,
    lstm_forward,
    lstm_step_backward,
    lstm_step_forward,
)
from .cells.rnn import rnn_backward, rnn_forward, rnn_step_backward, rnn_step_forward
from .checkpoint import load_checkpoint, save_checkpoint
from .data import CharVocab, batchify, load_pydoc_text, load_text, split_train_val
from .export import load_safetensors, save_safetensors
from .gradcheck import GradcheckError, gradcheck, numerical_gradient, rel_error
from .layers import Embedding, Linear, dropout_backward, dropout_forward
from .losses import mse_loss, softmax_cross_entropy
from .models import CharLM, SequenceClassifier, SequenceRegressor, SequenceTagger
from .optim import SGD, Adagrad, Adam, AdamW, RMSprop, clip_grad_norm, clip_grad_value
from .recurrent import GRU, LSTM, RNN, Recurrent
from .schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    ReduceLROnPlateau,
    StepLR,
)
from .train import MinibatchSource, TBPTTStream, Trainer, TrainingDivergedError

__version__ = "0.1.0"

#: Old top-level names whose code now lives in :mod:`lstm_bptt.experiments`. They resolve lazily
#: (PEP 562 module ``__getattr__``) so that importing the core never imports the experiments.
_EXPERIMENT_ALIASES = {
    "ngram_baselines": "lstm_bptt.experiments.ngram",
    "format_baselines": "lstm_bptt.experiments.ngram",
}


def __getattr__(name):
    """Resolve the documented aliases of :data:`_EXPERIMENT_ALIASES` on first use."""
    module = _EXPERIMENT_ALIASES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

__all__ = [
    "Recurrent", "LSTM", "GRU", "RNN", "Cell", "LSTMCell", "GRUCell", "RNNCell", "CELLS",
    "get_cell",
    "gru_step_forward", "gru_step_backward", "gru_forward", "gru_backward",
    "rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward",
    "lstm_step_forward", "lstm_step_backward",
    "Embedding", "Linear", "dropout_forward", "dropout_backward",
    "lstm_cell_forward", "lstm_cell_backward", "lstm_forward", "lstm_backward",
    "softmax_cross_entropy", "mse_loss",
    "gradcheck", "numerical_gradient", "rel_error", "GradcheckError",
    "CharLM", "SequenceClassifier", "SequenceRegressor", "SequenceTagger",
    "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "clip_grad_norm", "clip_grad_value",
    "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearWarmup", "ReduceLROnPlateau",
    "Trainer", "MinibatchSource", "TBPTTStream", "TrainingDivergedError",
    "save_checkpoint", "load_checkpoint", "save_safetensors", "load_safetensors",
    "CharVocab", "load_pydoc_text", "load_text", "split_train_val", "batchify",
    "ngram_baselines", "format_baselines",
    "set_fast_path", "fast_path_enabled", "set_recycling",
]
