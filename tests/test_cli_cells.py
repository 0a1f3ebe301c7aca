"""The cell type through the command line: `train --cell` records it in the checkpoint,
`sample` and `--resume` use it, flags that do not fit the cell are refused, `task --cell` runs
the preset with that cell. Parametrised over every registered cell."""

from __future__ import annotations

import argparse
import json

import pytest

from lstm_bptt import CELLS
from lstm_bptt.checkpoint import load_checkpoint
from lstm_bptt.experiments import train_job
from lstm_bptt.experiments.cli import main

SMALL = ["--steps", "6", "--eval-every", "3", "--hidden-size", "8", "--quiet",
         "--sample-length", "0", "--no-baselines", "--threads", "1", "--schedule", "constant"]
CELL_FLAGS = [["--cell", name] for name in sorted(CELLS)]
if "rnn" in CELLS:
    CELL_FLAGS.append(["--cell", "rnn", "--nonlinearity", "relu"])


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "hw.txt"
    path.write_text("hello world, hello lstm. " * 200)
    return path


@pytest.mark.parametrize("flags", CELL_FLAGS, ids=lambda f: "-".join(f[1::2]))
def test_train_records_the_cell_and_sample_and_resume_use_it(flags, text, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--text", str(text), "--out-dir", str(out)]
    assert main(base + SMALL + flags) == 0
    assert f"CharLM(cell='{flags[1]}'" in capsys.readouterr().out
    tree = load_checkpoint(out / "checkpoint.npz")
    config = tree["model"]["config"]
    assert config["cell"] == flags[1]
    if "--nonlinearity" in flags:
        assert config["cell_options"]["nonlinearity"] == flags[3]
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
    args = argparse.Namespace(cell="lstm", nonlinearity=None, defaults={"cell": "lstm",
                                                                         "nonlinearity": None})
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
