"""The ``--cell`` flags shared by ``lstm-bptt train`` and ``lstm-bptt task``."""

from __future__ import annotations

import argparse

__all__ = ["CELL_CHOICES", "CELL_FLAG_DEFAULTS", "LSTM_VARIANT_FLAGS", "add_cell_flags",
           "cell_options_from_args"]

CELL_CHOICES = ("lstm", "gru", "rnn")


def add_cell_flags(parser) -> None:
    """``--cell`` and the cell option flags (the same for `train` and `task`)."""
    parser.add_argument("--cell", choices=CELL_CHOICES, default="lstm",
                        help="recurrent cell: LSTM, GRU (PyTorch's nn.GRU) or Elman RNN")
    parser.add_argument("--nonlinearity", choices=["tanh", "relu"], default=None,
                        help="with --cell rnn: the RNN's nonlinearity (default tanh)")
    parser.add_argument("--peephole", action="store_true",
                        help="with --cell lstm: peephole connections (Gers, Schraudolph & "
                             "Schmidhuber 2002)")
    parser.add_argument("--layer-norm", action="store_true",
                        help="with --cell lstm: layer-normalised LSTM (Ba, Kiros & Hinton 2016)")
    parser.add_argument("--recurrent-dropout", type=_probability, default=0.0, metavar="P",
                        help="with --cell lstm: variational dropout on the hidden state, one "
                             "mask per sequence (Gal & Ghahramani 2016)")
    parser.add_argument("--input-dropout", type=_probability, default=0.0, metavar="P",
                        help="with --cell lstm: variational dropout on the inputs, one mask "
                             "per sequence")
    parser.add_argument("--learn-initial-state", action="store_true",
                        help="learn the initial state (h_0, and c_0 for an LSTM) instead of "
                             "starting at zeros; any cell")


#: Values of the cell flags in runs from before the flags existed (an LSTM with no options).
CELL_FLAG_DEFAULTS = {"cell": "lstm", "nonlinearity": None, "peephole": False,
                      "layer_norm": False, "recurrent_dropout": 0.0, "input_dropout": 0.0,
                      "learn_initial_state": False}

#: LSTM variant flags (argparse dest -> value when off); all are cell options of the LSTM.
LSTM_VARIANT_FLAGS = {"peephole": False, "layer_norm": False, "recurrent_dropout": 0.0,
                      "input_dropout": 0.0}


def _probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}") \
            from None
    if not 0.0 <= p < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text}")
    return p


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
    for dest, off in LSTM_VARIANT_FLAGS.items():
        value = getattr(args, dest, off)
        if value != off:
            if args.cell != "lstm":
                flag = "--" + dest.replace("_", "-")
                raise ValueError(f"{flag}: applies to --cell lstm only, got --cell {args.cell}")
            options[dest] = value
    if getattr(args, "learn_initial_state", False):
        options["learn_initial_state"] = True
    if getattr(args, "forget_bias", None) is not None and args.cell != "lstm":
        raise ValueError(f"--forget-bias: applies to --cell lstm only, got --cell {args.cell}")
    return options
