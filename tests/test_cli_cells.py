"""The cell type through the command line: `train --cell` records it in the checkpoint,
`sample` and `--resume` use it, flags that do not fit the cell are refused, `task --cell` runs
the preset with that cell. Parametrised over every registered cell."""

from __future__ import annotations

import inspect
import json

import pytest

from lstm_bptt import CELLS, Recurrent, get_cell
from lstm_bptt.checkpoint import load_checkpoint
from lstm_bptt.experiments import train_job
from lstm_bptt.experiments.cli import build_parser, main

SMALL = ["--steps", "6", "--eval-every", "3", "--hidden-size", "8", "--quiet",
         "--sample-length", "0", "--no-baselines", "--threads", "1", "--schedule", "constant"]
CELL_FLAGS = [(["--cell", name], {}) for name in sorted(CELLS)]
if "rnn" in CELLS:
    CELL_FLAGS.append((["--cell", "rnn", "--nonlinearity", "relu"], {"nonlinearity": "relu"}))
try:
    get_cell("lstm", peephole=True, layer_norm=True, recurrent_dropout=0.1)
    CELL_FLAGS.append((["--cell", "lstm", "--peephole", "--layer-norm", "--recurrent-dropout",
                        "0.1"], {"peephole": True, "layer_norm": True, "recurrent_dropout": 0.1}))
except TypeError:  # the LSTM variants are not in the cell registry yet
    pass
if "learn_initial_state" in inspect.signature(Recurrent).parameters:
    CELL_FLAGS.append((["--cell", "lstm", "--learn-initial-state"],
                       {"learn_initial_state": True}))


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "hw.txt"
    path.write_text("hello world, hello lstm. " * 200)
    return path


@pytest.mark.parametrize("flags, options", CELL_FLAGS,
                         ids=[" ".join(f[1:]) for f, _ in CELL_FLAGS])
def test_train_records_the_cell_and_sample_and_resume_use_it(flags, options, text, tmp_path,
                                                             capsys):
    out = tmp_path / "run"
    base = ["train", "--text", str(text), "--out-dir", str(out)]
    assert main(base + SMALL + flags) == 0
    assert f"CharLM(cell='{flags[1]}'" in capsys.readouterr().out
    tree = load_checkpoint(out / "checkpoint.npz")
    config = tree["model"]["config"]
    assert config["cell"] == flags[1]
    assert {k: config["cell_options"].get(k) for k in options} == options
    assert tree["extra"]["run"]["cell"] == flags[1]

    assert main(["sample", "--checkpoint", str(out / "checkpoint.npz"), "--length", "12",
                 "--prime", "hel"]) == 0
    assert capsys.readouterr().out.startswith("hel")

    more = [a if a != "6" else "9" for a in SMALL]
    assert main(base + more + ["--resume"]) == 0  # the cell comes from the checkpoint
    assert "resumed from step 6" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["steps"] == 9
    assert load_checkpoint(out / "checkpoint.npz")["model"]["config"]["cell"] == flags[1]


def test_resume_with_another_cell_is_refused(text, tmp_path, capsys):
    other = next((c for c in sorted(CELLS) if c != "lstm"), None)
    if other is None:
        pytest.skip("only the LSTM is registered")
    out = tmp_path / "run"
    base = ["train", "--text", str(text), "--out-dir", str(out)] + SMALL
    assert main(base) == 0
    capsys.readouterr()
    assert main(base + ["--resume", "--cell", other]) == 2
    assert f"--cell {other} (checkpoint: lstm)" in capsys.readouterr().err


def test_checkpoints_from_before_the_cell_flag_are_lstm_runs():
    parser = build_parser()
    args = parser.parse_args(["train"])
    args.defaults = {a.dest: a.default for a in parser.train_parser._actions}
    train_job._resume_settings(args, {})  # an old run dict has no "cell"
    assert args.cell == "lstm"
    args.cell = "gru"
    with pytest.raises(ValueError, match=r"--cell gru \(checkpoint: lstm\)"):
        train_job._resume_settings(args, {})


@pytest.mark.parametrize("flags, message", [
    (["--cell", "gru", "--nonlinearity", "relu"], "--nonlinearity: applies to --cell rnn only"),
    (["--nonlinearity", "tanh"], "--nonlinearity: applies to --cell rnn only, got --cell lstm"),
    (["--cell", "rnn", "--forget-bias", "1"], "--forget-bias: applies to --cell lstm only"),
])
def test_flags_that_do_not_fit_the_cell_are_refused(flags, message, text, tmp_path, capsys):
    code = main(["train", "--text", str(text), "--out-dir", str(tmp_path / "r")] + SMALL + flags)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_task_runs_the_preset_with_the_cell(cell, capsys):
    assert main(["task", "temporal-order", "--quick", "--steps", "3", "--cell", cell,
                 "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cell"] == cell and result["preset"]["cell"] == cell
    assert result["steps"] == 3


def test_task_nonlinearity_needs_the_rnn(capsys):
    assert main(["task", "temporal-order", "--quick", "--nonlinearity", "relu"]) == 2
    assert "--nonlinearity: applies to --cell rnn only" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--cell", "gru", "--peephole"], "--peephole: applies to --cell lstm only, got --cell gru"),
    (["--cell", "rnn", "--layer-norm"], "--layer-norm: applies to --cell lstm only"),
    (["--cell", "gru", "--recurrent-dropout", "0.1"], "--recurrent-dropout: applies to --cell"),
])
def test_lstm_variant_flags_need_the_lstm(flags, message, text, tmp_path, capsys):
    code = main(["train", "--text", str(text), "--out-dir", str(tmp_path / "r")] + SMALL + flags)
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1", "-0.1", "x"])
def test_recurrent_dropout_is_a_probability(value, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--recurrent-dropout", value])
    assert "--recurrent-dropout: expected a probability in [0, 1)" in capsys.readouterr().err
