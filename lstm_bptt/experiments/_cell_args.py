"""The ``--cell`` flags shared by ``lstm-bptt train`` and ``lstm-bptt task``."""

from __future__ import annotations

__all__ = ["CELL_CHOICES", "add_cell_flags", "cell_options_from_args"]

CELL_CHOICES = ("lstm", "gru", "rnn")


def add_cell_flags(parser) -> None:
    """``--cell`` and the cell option flags (the same for `train` and `task`)."""
    parser.add_argument("--cell", choices=CELL_CHOICES, default="lstm",
                        help="recurrent cell: LSTM, GRU (PyTorch's nn.GRU) or Elman RNN")
    parser.add_argument("--nonlinearity", choices=["tanh", "relu"], default=None,
                        help="with --cell rnn: the RNN's nonlinearity (default tanh)")


def cell_options_from_args(args) -> dict:
    """The cell options given by flags; a flag that does not apply to ``--cell`` is refused.

    Raises
    ------
    ValueError
        e.g. ``--nonlinearity`` without ``--cell rnn``, ``--forget-bias`` without the LSTM.
    """
    options = {}
    if args.nonlinearity is not None:
        if args.cell != "rnn":
            raise ValueError(f"--nonlinearity: applies to --cell rnn only, got --cell "
                             f"{args.cell}")
        options["nonlinearity"] = args.nonlinearity
    if getattr(args, "forget_bias", None) is not None and args.cell != "lstm":
        raise ValueError(f"--forget-bias: applies to --cell lstm only, got --cell {args.cell}")
    return options
