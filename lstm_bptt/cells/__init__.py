"""Recurrent cell types behind one contract (:class:`lstm_bptt.cells.base.Cell`).

``CELLS`` maps a name to a cell class; :func:`get_cell` builds one from a name (or passes a
cell object through). Adding a cell type: write ``cells/<name>.py`` with a :class:`Cell`
subclass (see :mod:`lstm_bptt.cells.base` for what it must provide and
:mod:`lstm_bptt.cells.lstm` for a complete example) and register it here; the layer
(:class:`lstm_bptt.recurrent.Recurrent`), the models and the trainer need no change.
"""

from __future__ import annotations

from .base import Cell
from .gru import GRUCell
from .lstm import LSTMCell
from .lstm_variants import VARIANT_OPTIONS, LSTMVariantCell
from .rnn import RNNCell

#: Registry: cell name -> cell class.
CELLS: dict[str, type[Cell]] = {"lstm": LSTMCell, "gru": GRUCell, "rnn": RNNCell}


def get_cell(cell, **options) -> Cell:
    """Return a cell object: ``cell`` itself if it is a :class:`Cell` (then no options), or
    ``CELLS[cell](**options)`` for a registered name.

    Raises
    ------
    TypeError
        ``cell`` is neither a str nor a Cell, or options given with a Cell object.
    ValueError
        An unknown cell name (the message lists the known ones).
    """
    if isinstance(cell, Cell):
        if options:
            raise TypeError(
                f"cell: options {sorted(options)} given with a {type(cell).__name__} object; "
                "pass them to the cell's constructor"
            )
        return cell
    if not isinstance(cell, str):
        raise TypeError(f"cell: expected a cell name or a Cell object, got {type(cell).__name__}")
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {cell!r}")
    cls = CELLS[cell]
    if cls is LSTMCell:
        # peepholes, layer norm or variational dropout: the readable variant implementation;
        # with all of them off (or not given), the plain LSTM and its fast path
        if any(options.get(k, off) != off for k, off in VARIANT_OPTIONS.items()):
            cls = LSTMVariantCell
        else:
            options = {k: v for k, v in options.items() if k not in VARIANT_OPTIONS}
    try:
        return cls(**options)
    except TypeError as exc:
        raise TypeError(
            f"cell {cell!r}: unexpected option(s) {sorted(options)} ({exc}); its init options "
            f"are {list(cls.init_option_names)}"
        ) from exc


__all__ = ["CELLS", "Cell", "GRUCell", "LSTMCell", "LSTMVariantCell", "RNNCell", "get_cell"]
