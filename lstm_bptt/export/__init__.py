"""Weights in and out: state dicts, safetensors written by hand, and converters to other layouts.

Three things live here, all NumPy only:

* **State dicts** (:class:`StateDictMixin`, mixed into every module and model): ``state_dict()``
  returns copies of the parameters under PyTorch's names and shapes; ``load_state_dict(sd,
  strict=True)`` copies values *into* the existing arrays (so an optimizer holding them keeps
  working) after checking every key and shape first (nothing is changed when a check fails).
* **safetensors** (:func:`save_safetensors`, :func:`load_safetensors`,
  :func:`safetensors_metadata`): the format of Hugging Face's ``safetensors`` package, written
  and read here without it. A file is ``[8 bytes: N, unsigned little-endian][N bytes: JSON
  header][raw little-endian tensor bytes]``; the header maps each name to ``{"dtype": "F64",
  "shape": [...], "data_offsets": [begin, end]}`` (offsets relative to the start of the byte
  buffer) and may hold ``"__metadata__"``, a str -> str map. A file written here loads with
  ``safetensors.torch.load_file`` straight into ``torch.nn.LSTM(...).load_state_dict(...)``.
* **Converters** between PyTorch's LSTM layout and Keras 3, Flax linen and the CS231n layout
  (:func:`lstm_to_keras`, :func:`lstm_from_keras`, :func:`lstm_to_flax`, :func:`lstm_from_flax`,
  :func:`lstm_to_cs231n`, :func:`lstm_from_cs231n`), the GRU and RNN ones for Keras and Flax
  (:func:`gru_to_keras`, :func:`gru_from_keras`, :func:`gru_to_flax`, :func:`gru_from_flax`,
  :func:`rnn_to_keras`, ...), and for whole modules and models (:func:`export_weights`,
  :func:`import_weights`), which also convert Linear (dense) and Embedding layers.

Files: ``state_dict.py`` (the mixin and its logic), ``files.py`` (safetensors, atomic writes,
metadata), ``layouts.py`` (LSTM converters and shared helpers), ``layouts_gru_rnn.py``,
``weights.py`` (whole modules and models). None imports the rest of the library.

Layouts (D input features, H hidden units, gate blocks of H rows or columns):

==========  ==========================================  ==========  =========================
library     weights                                     gate order  bias
==========  ==========================================  ==========  =========================
PyTorch     weight_ih (4H, D), weight_hh (4H, H)         i, f, g, o  bias_ih (4H,), bias_hh
Keras 3     kernel (D, 4H), recurrent_kernel (H, 4H)     i, f, c, o  bias (4H,) (one)
Flax linen  ii/if/ig/io kernel (D, H), hi/hf/hg/ho       one dense   hi/hf/hg/ho bias (H,)
            kernel (H, H)                                per gate    (one per gate)
CS231n      Wx (D, 4H), Wh (H, 4H)                       i, f, o, g  b (4H,) (one)
==========  ==========================================  ==========  =========================

For the LSTM, Keras's c is PyTorch's g (the candidate, tanh). Keras, Flax and CS231n have one
bias where PyTorch has two; only the sum b_ih + b_hh enters the equations, so ``to_*`` writes
the sum and ``from_*`` puts it into ``bias_ih`` and zeros into ``bias_hh``. Hence
``to(from(w)) == w`` exactly, and ``from(to(sd))`` has the same sum (so the same outputs, up to
the rounding of one addition: ~1e-16 relative in float64) but not the same split. States: Keras
passes ``initial_state=[h, c]``, Flax's carry is ``(c, h)``.

GRU (gates r, z, n in PyTorch): Keras 3 ``GRU(reset_after=True)`` has kernel (D, 3H) and
recurrent_kernel (H, 3H) in the order z, r, h and bias (2, 3H) = (input, recurrent), exactly
PyTorch's two biases; Flax ``GRUCell`` has ``ir, iz, in`` (D, H) with bias, ``hr, hz, hn``
(H, H) and a bias on ``hn`` only (see :func:`gru_to_flax`).
"""

from .files import (
    MAX_HEADER_BYTES,
    load_safetensors,
    module_metadata,
    safetensors_metadata,
    save_npz,
    save_safetensors,
)
from .layouts import (
    FORMATS,
    lstm_from_cs231n,
    lstm_from_flax,
    lstm_from_keras,
    lstm_to_cs231n,
    lstm_to_flax,
    lstm_to_keras,
)
from .layouts_gru_rnn import (
    gru_from_flax,
    gru_from_keras,
    gru_to_flax,
    gru_to_keras,
    rnn_from_flax,
    rnn_from_keras,
    rnn_to_flax,
    rnn_to_keras,
)
from .state_dict import IncompatibleKeys, StateDictMixin, load_state_dict_into
from .weights import export_weights, import_weights

__all__ = [
    "StateDictMixin", "IncompatibleKeys", "load_state_dict_into", "save_safetensors",
    "load_safetensors", "safetensors_metadata", "module_metadata", "save_npz", "FORMATS",
    "MAX_HEADER_BYTES",
    "lstm_to_keras", "lstm_from_keras", "lstm_to_flax", "lstm_from_flax",
    "lstm_to_cs231n", "lstm_from_cs231n", "gru_to_keras", "gru_from_keras", "gru_to_flax",
    "gru_from_flax", "rnn_to_keras", "rnn_from_keras", "rnn_to_flax", "rnn_from_flax",
    "export_weights", "import_weights",
]
