"""The command-line interface: argument errors, gradcheck, and a CI-sized training run that
proves learning on the real default text."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest

from lstm_bptt.data import CharVocab, load_pydoc_text, split_train_val
from lstm_bptt.experiments.cli import main
from lstm_bptt.experiments.ngram import ngram_baselines


def test_bad_argument_exits_2_with_one_line_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--steps", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--steps: expected a positive integer, got 0" in err


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fly"])
    assert exc.value.code == 2


def test_missing_text_file_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "--text", str(tmp_path / "nope.txt"), "--threads", "1",
                 "--out-dir", str(tmp_path / "run")])
    assert code == 2
    assert "not found" in capsys.readouterr().err


def test_gradcheck_command_passes_and_reports_json(capsys):
    assert main(["gradcheck", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    components = {r["component"] for r in report["rows"]}
    assert {"lstm_cell", "LSTM (2 layers)", "CharLM (embedding, 2 layers)"} <= components
    assert max(r["max_rel_error"] for r in report["rows"]) < 1e-7


def test_gradcheck_command_fails_when_tolerance_is_impossible(capsys):
    # A tolerance below float64 rounding must fail: the exit status reflects the check.
    assert main(["gradcheck", "--tol", "1e-30"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--steps", "500", "--eval-every", "250", "--out-dir", str(out),
                 "--quiet", "--sample-length", "50", "--no-baselines", "--threads", "1"])
    assert code == 0
    return out


@pytest.mark.slow
def test_ci_sized_training_run_learns_the_python_docs(trained_run):
    summary = json.loads((trained_run / "summary.json").read_text())
    text = load_pydoc_text()
    vocab = CharVocab.from_text(text)
    train, val = split_train_val(vocab.encode(text))
    bigram = ngram_baselines(train, val, len(vocab), orders=(2,))["bigram (add-one)"]
    assert summary["val_loss"] < 2.0
    assert summary["val_loss"] < bigram
    assert math.isclose(summary["val_bpc"], summary["val_loss"] / math.log(2))
    assert (trained_run / "checkpoint.npz").exists()
    assert "val_loss" in (trained_run / "history.csv").read_text().splitlines()[0]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A 20-step run on a small text: enough for sampling tests (seconds, not a minute)."""
    out = tmp_path_factory.mktemp("small_run")
    text = out / "hw.txt"
    text.write_text("def hello world, hello lstm. " * 400)
    code = main(["train", "--text", str(text), "--out-dir", str(out / "run"), *SMALL])
    assert code == 0
    return out / "run"


def test_sample_from_checkpoint(small_run, capsys):
    code = main(["sample", "--checkpoint", str(small_run / "checkpoint.npz"),
                 "--length", "40", "--prime", "def ", "--seed", "3"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("def ") and len(out.rstrip("\n")) == 44
    # same seed, same text
    main(["sample", "--checkpoint", str(small_run / "checkpoint.npz"), "--length", "40",
          "--prime", "def ", "--seed", "3"])
    assert capsys.readouterr().out == out


def test_sample_rejects_unknown_prime_characters(small_run, capsys):
    code = main(["sample", "--checkpoint", str(small_run / "checkpoint.npz"),
                 "--prime", "\u2603"])
    assert code == 2
    assert "not in the model's vocabulary" in capsys.readouterr().err


SMALL = ["--steps", "20", "--eval-every", "10", "--hidden-size", "16", "--quiet",
         "--sample-length", "0", "--no-baselines", "--threads", "1"]


@pytest.fixture
def small_text(tmp_path):
    path = tmp_path / "hw.txt"
    path.write_text("hello world, hello lstm. " * 400)
    return path


def test_resume_continues_a_constant_lr_run(small_text, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--text", str(small_text), "--out-dir", str(out), "--schedule", "constant"]
    assert main(args + SMALL) == 0
    capsys.readouterr()
    more = [a if a != "20" else "30" for a in SMALL]  # --steps 30
    assert main(args + more + ["--resume"]) == 0
    assert "resumed from step 20" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["steps"] == 30


def test_resume_refuses_settings_that_contradict_the_checkpoint(small_text, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--text", str(small_text), "--out-dir", str(out)]
    assert main(args + SMALL) == 0
    capsys.readouterr()
    assert main(args + SMALL + ["--resume", "--lr", "0.1"]) == 2
    assert "--lr 0.1 (checkpoint: 0.01)" in capsys.readouterr().err
    more = [a if a != "20" else "30" for a in SMALL]
    assert main(args + more + ["--resume"]) == 2  # cosine schedule was fitted to 20 steps
    assert "cosine schedule" in capsys.readouterr().err


def test_resume_refuses_another_text(small_text, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--text", str(small_text), "--out-dir", str(out)] + SMALL) == 0
    other = tmp_path / "other.txt"
    other.write_text("hello hello world. " * 300)  # same characters, another text
    capsys.readouterr()
    assert main(["train", "--text", str(other), "--out-dir", str(out), "--resume"] + SMALL) == 2
    assert "differs from it" in capsys.readouterr().err


def test_existing_checkpoint_is_never_overwritten_silently(small_text, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--text", str(small_text), "--out-dir", str(out)] + SMALL
    assert main(args) == 0
    before = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "checkpoint.npz").read_bytes() == before
    assert main(args + ["--overwrite", "--seed", "1"]) == 0
    assert (out / "checkpoint.npz").read_bytes() != before


def test_bad_paths_are_one_line_errors(small_text, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["train", "--text", str(tmp_path), "--out-dir", str(tmp_path / "r")]) == 2
    assert main(["train", "--text", str(small_text), "--out-dir", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert "--text: expected a UTF-8 text file, got a directory" in err
    assert "--out-dir: expected a directory, got a file" in err


SHAKESPEARE = (
    __import__("pathlib").Path(__file__).resolve().parents[2]
    / "shared" / "data" / "tinyshakespeare" / "input.txt"
)


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="Tiny Shakespeare is read from ../shared only")
def test_train_on_a_text_file(tmp_path, capsys):
    # --text on a real 1.1M-character file with its own 65-symbol vocabulary.
    code = main(["train", "--text", str(SHAKESPEARE), "--steps", "30", "--eval-every", "30",
                 "--hidden-size", "32", "--out-dir", str(tmp_path), "--quiet",
                 "--sample-length", "20", "--threads", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "1,115,394 characters, 65 symbols" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["val_loss"] < math.log(65)  # better than uniform after 30 steps


def test_k2_smaller_than_k1_is_refused_before_any_work(capsys):
    assert main(["train", "--k2", "10", "--seq-length", "64"]) == 2
    assert "--k2: expected >= --seq-length (k1) = 64, got 10" in capsys.readouterr().err


def test_task_json_prints_only_json_on_stdout(capsys):
    assert main(["task", "airline", "--quick", "--json", "--quiet", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["task"] == "airline" and "[airline]" in captured.err


def test_interrupt_reports_the_last_checkpoint_step(small_text, tmp_path, capsys, monkeypatch):
    from lstm_bptt.train import Trainer

    real_step = Trainer.train_step

    def step_then_interrupt(self):
        if self.step == 15:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_then_interrupt)
    out = tmp_path / "run"
    code = main(["train", "--text", str(small_text), "--out-dir", str(out)] + SMALL)
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted at step 15: the last checkpoint (step 10)" in err
    assert (out / "history.csv").exists()


def test_misspelt_flag_shows_the_subcommand_usage_and_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--hiden-size", "128"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: lstm-bptt train")
    assert "unrecognized arguments: --hiden-size 128 (did you mean --hidden-size?)" in err
    with pytest.raises(SystemExit):
        main(["sample", "--checkpoint", "c.npz", "--zzz"])
    err = capsys.readouterr().err
    assert "usage: lstm-bptt sample" in err and "unrecognized arguments: --zzz" in err
    assert "did you mean" not in err


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_checkpoints_the_current_step_and_exits(small_text, tmp_path, capsys,
                                                       monkeypatch, signum, code):
    from lstm_bptt.checkpoint import load_checkpoint
    from lstm_bptt.train import Trainer

    real_step = Trainer.train_step

    def step_with_signal(self):
        if self.step == 13:
            os.kill(os.getpid(), signum)  # arrives during the update to step 14
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_with_signal)
    out = tmp_path / "run"
    assert main(["train", "--text", str(small_text), "--out-dir", str(out)] + SMALL) == code
    err = capsys.readouterr().err
    assert f"{signal.Signals(signum).name} received at step 14: checkpoint saved" in err
    tree = load_checkpoint(out / "checkpoint.npz")
    assert int(tree["step"]) == 14  # not the last evaluation (step 10): the current step
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[-1].split(",")[0] == "14" and len(rows) == 1 + 14  # header + one row per step
    assert signal.getsignal(signum) is not None  # handlers restored


def test_time_budget_stops_evaluates_and_checkpoints(small_text, tmp_path, capsys):
    from lstm_bptt.checkpoint import load_checkpoint

    out = tmp_path / "run"
    args = ["train", "--text", str(small_text), "--out-dir", str(out), "--time-budget", "0.001s"]
    assert main(args + [a if a != "20" else "1000" for a in SMALL]) == 0
    printed = capsys.readouterr().out
    assert "stopped at step 1 of 1000: time budget of 0.001s reached" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 1 and "time budget" in summary["stop_reason"]
    assert int(load_checkpoint(out / "checkpoint.npz")["step"]) == 1


def test_bad_time_budget_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--time-budget", "5 minutes"])
    assert "expected a positive duration such as 90s, 5m or 1.5h" in capsys.readouterr().err


def test_resume_path_continues_in_its_folder_and_init_from_trains_further(small_text, tmp_path,
                                                                          capsys):
    out = tmp_path / "run"
    base = ["train", "--text", str(small_text)]
    assert main(base + ["--out-dir", str(out)] + SMALL) == 0
    # a finished cosine run: --resume has nothing to do; --init-from starts a new run from it
    assert main(base + ["--resume", str(out / "checkpoint.npz")] + SMALL) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()  # --resume PATH never writes to the default folder
    more = tmp_path / "more"
    assert main(base + ["--init-from", str(out / "checkpoint.npz"), "--out-dir", str(more)]
                + SMALL) == 0
    assert "initialised from" in capsys.readouterr().out
    assert (more / "checkpoint.npz").is_file()
    # contradicting the checkpoint's model is refused, before any work
    assert main(base + ["--init-from", str(out / "checkpoint.npz"), "--out-dir",
                        str(tmp_path / "x")] + SMALL + ["--hidden-size", "8"]) == 2
    assert "--hidden-size 8 (checkpoint: 16)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_values_are_checked_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    for bad in (["--dropout", "1.5"], ["--warmup", "50", "--steps", "10"], ["--resume"],
                ["--resume", str(tmp_path / "missing.npz")]):
        assert main(["train", "--out-dir", str(out), *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err
        assert not out.exists()  # no folder made, no baselines computed


def test_task_knobs_and_save_give_a_model_to_inspect(tmp_path, capsys):
    import numpy as np

    from lstm_bptt.checkpoint import load_checkpoint
    from lstm_bptt.experiments.presets import run_task
    from lstm_bptt.models import build_model

    path = tmp_path / "m" / "airline.npz"
    args = ["task", "airline", "--quick", "--steps", "5", "--hidden-size", "5", "--lr", "0.02",
            "--seq-length", "7", "--quiet", "--threads", "1", "--json"]
    assert main(args + ["--save", str(path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["preset"]["hidden_size"] == 5 and result["preset"]["lr"] == 0.02
    assert result["preset"]["options"]["window"] == 7 and "model" not in result
    tree = load_checkpoint(path)
    model = build_model(tree["model"]["class"], tree["model"]["config"])
    model.load_params(tree["params"])
    assert model.hidden_size == 5 and tree["extra"]["task"] == "airline"
    # the same run in Python returns the model itself: the saved weights are its weights
    again = run_task("airline", quick=True, steps=5, log=lambda *a, **k: None,
                     overrides={"hidden_size": 5, "lr": 0.02, "options": {"window": 7}},
                     return_model=True)
    for k, v in again["model"].params.items():
        np.testing.assert_array_equal(v, tree["params"][k], err_msg=k)
    # nothing is replaced; a knob the task cannot take is refused before any work
    assert main(args + ["--save", str(path)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["task", "reber", "--seq-length", "5", "--quick"]) == 2
    assert "--seq-length: task reber has a fixed sequence length" in capsys.readouterr().err


def test_task_size_overrides_are_bounded(capsys):
    for flag in ("--hidden-size", "--batch-size", "--seq-length"):
        with pytest.raises(SystemExit) as exc:
            main(["task", "adding", flag, "10000000"])
        assert exc.value.code == 2
        assert f"{flag}: expected an integer in 1.." in capsys.readouterr().err
