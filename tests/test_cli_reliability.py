"""The CLI never destroys a good run: divergence stops (or rolls back) with a message and the
last good checkpoint intact, one run per --out-dir, bounded sizes, clean signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lstm_bptt.checkpoint import load_checkpoint, save_checkpoint
from lstm_bptt.experiments import cli
from lstm_bptt.experiments.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--steps", "20", "--eval-every", "10", "--hidden-size", "16", "--quiet",
         "--sample-length", "0", "--no-baselines", "--threads", "1"]


@pytest.fixture
def small_text(tmp_path):
    path = tmp_path / "hw.txt"
    path.write_text("hello world, hello lstm. " * 400)
    return path


def _train(small_text, out, *extra):
    return main(["train", "--text", str(small_text), "--out-dir", str(out), *SMALL, *extra])


@pytest.mark.parametrize("flag, value, pattern", [
    ("--hidden-size", "100000000", "expected an integer in 1..4,096"),
    ("--embedding-dim", "100000000", "expected an integer in 0..4,096"),
    ("--num-layers", "100000", "expected an integer in 1..16"),
    ("--sample-length", "10000000000", "expected an integer in 0..1,000,000"),
    ("--threads", "100000", "expected an integer in 1..256"),
    ("--batch-size", "100000000", "expected an integer in 1..4,096"),
])
def test_sizes_and_counts_are_bounded(capsys, flag, value, pattern):
    with pytest.raises(SystemExit) as exc:
        main(["train", flag, value])
    assert exc.value.code == 2
    assert pattern in capsys.readouterr().err


def test_warmup_longer_than_the_run_is_refused(capsys):
    assert main(["train", "--steps", "10", "--warmup", "11"]) == 2
    assert "--warmup: expected at most --steps = 10, got 11" in capsys.readouterr().err


def test_default_steps_are_passes_over_the_text_within_bounds():
    from lstm_bptt.experiments.train_job import default_steps

    assert default_steps(418_544, 32, 64) == 2000  # the built-in text: 1,431 -> the minimum
    assert default_steps(1_003_854, 32, 64) == 3431  # Tiny Shakespeare: 7 passes
    assert default_steps(1_003_854, 32, 32) == 4000  # 6,862 -> the maximum
    assert default_steps(10**9, 32, 64) == 4000


def test_default_steps_apply_to_the_run_and_its_warmup_check(capsys, tmp_path, small_text):
    # 10,000 characters, 9,000 for training: the minimum of 2,000 updates
    assert main(["train", "--text", str(small_text), "--warmup", "2001", "--out-dir",
                 str(tmp_path / "run")]) == 2
    assert "--warmup: expected at most --steps = 2000, got 2001" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["1e-320", "1e300", "0.001", "inf"])
def test_sample_temperature_limits(capsys, value):
    with pytest.raises(SystemExit):
        main(["sample", "--checkpoint", "x.npz", "--temperature", value])
    assert "--temperature: expected a number in 0.01..100" in capsys.readouterr().err


def test_divergence_stops_with_exit_1_and_keeps_the_good_checkpoint(small_text, tmp_path,
                                                                      capsys):
    out = tmp_path / "run"
    assert _train(small_text, out, "--schedule", "constant") == 0
    good = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    run2 = tmp_path / "run2"
    code = _train(small_text, run2, "--optimizer", "sgd", "--lr", "1e3", "--clip", "0",
                  "--schedule", "constant")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "training diverged at step" in err[0]
    assert "No checkpoint was written" in err[0]
    assert not (run2 / "checkpoint.npz").exists()
    assert (out / "checkpoint.npz").read_bytes() == good


def test_divergence_after_a_checkpoint_names_it(small_text, tmp_path, capsys, monkeypatch):
    """A run that goes bad after its step-10 checkpoint says where that file is; the file is
    the step-10 one, untouched."""
    from lstm_bptt import optim

    real = optim.Adam.step
    calls = []

    def blow_up_at_15(self, grads):
        real(self, grads)
        calls.append(1)
        if len(calls) == 15:
            next(iter(self.params.values()))[...] = np.inf

    out = tmp_path / "run"
    monkeypatch.setattr(optim.Adam, "step", blow_up_at_15)
    code = _train(small_text, out)
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"The last good checkpoint is {out / 'checkpoint.npz'} (step 10)" in err
    assert load_checkpoint(out / "checkpoint.npz")["step"] == 10


def test_rollback_and_lower_lr_recovers(small_text, tmp_path, capsys):
    out = tmp_path / "run"
    code = _train(small_text, out, "--optimizer", "sgd", "--lr", "1e3", "--clip", "0",
                  "--schedule", "constant", "--on-divergence", "rollback-and-lower-lr")
    assert code == 0
    tree = load_checkpoint(out / "checkpoint.npz")
    assert 1 <= tree["trainer"]["rollbacks"] <= 3
    assert tree["optimizer"]["hyperparams"]["lr"] == pytest.approx(
        1e3 * 0.1 ** tree["trainer"]["rollbacks"])
    assert all(np.isfinite(p).all() for p in tree["params"].values())


def test_second_run_into_a_busy_folder_is_refused_at_once(small_text, tmp_path, capsys):
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # another live run holds the folder
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write("pid 4242\n")
        held.flush()
        t0 = time.perf_counter()
        assert _train(small_text, out) == 2
        assert time.perf_counter() - t0 < 5
    err = capsys.readouterr().err
    assert f"--out-dir {out} is in use by another run (pid 4242)" in err
    assert not (out / "checkpoint.npz").exists()


def test_stale_lock_of_a_dead_run_does_not_block(small_text, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("pid 999999\n")  # left by a killed run: no flock held
    assert _train(small_text, out) == 0
    assert (out / ".lock").read_text() == f"pid {os.getpid()}\n"


def test_folder_without_room_is_refused_before_training(small_text, tmp_path, capsys,
                                                         monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 10))
    out = tmp_path / "run"
    assert _train(small_text, out) == 2
    err = capsys.readouterr().err
    assert "10 bytes free, a checkpoint of this model needs about" in err
    assert not (out / "history.csv").exists()


def _forged_run_checkpoint(tmp_path, small_text, edit):
    out = tmp_path / "run"
    assert _train(small_text, out, "--steps", "10") == 0
    path = out / "checkpoint.npz"
    tree = load_checkpoint(path)
    edit(tree)
    save_checkpoint(path, tree)
    return path


@pytest.mark.parametrize("edit, pattern", [
    (lambda t: t["model"]["config"].update(hidden_size=10**9),
     "model/config/hidden_size: expected an integer in 1..4,096, got 1000000000"),
    (lambda t: t["extra"].update(vocab=np.array([3.5])), "extra/vocab: expected"),
    (lambda t: t["extra"].update(vocab=t["extra"]["vocab"][::-1].copy()),
     "extra/vocab: chars: expected distinct characters sorted"),
    (lambda t: t["params"].update({"head.bias": np.zeros(3, np.float32)}),
     r"member params/head.bias: expected shape \(\d+,\) and dtype float32, got shape \(3,\)"),
    (lambda t: t["params"].update({"head.bias": t["params"]["head.bias"].astype(np.int64)}),
     r"member params/head.bias: expected .* dtype float32, got .* dtype int64"),
])
def test_sample_reads_a_forged_checkpoint_defensively(tmp_path, small_text, capsys, edit,
                                                      pattern):
    import re

    path = _forged_run_checkpoint(tmp_path, small_text, edit)
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(path), "--length", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert re.search(pattern, err[0]), err[0]


def _spawn(args, out):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "lstm_bptt", *args, "--out-dir", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc, what: str, timeout: float = 60.0) -> None:
    """Wait until the child has loaded a shared library whose path contains ``what`` (Linux
    /proc): a point in its start-up reached whatever the machine's load, unlike a fixed delay.
    Python's own start-up, before any of our code runs, is not ours to handle."""
    maps = Path(f"/proc/{proc.pid}/maps")
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if what in maps.read_text():
                return
        except OSError:
            return
        time.sleep(0.005)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig, code, moment", [(signal.SIGINT, 130, "imports"),
                                               (signal.SIGTERM, 143, "training")])
def test_signals_exit_cleanly_at_any_moment(tmp_path, small_text, sig, code, moment):
    """While the modules load (NumPy just loaded) and during training (a second signal during
    the clean-up too): the exit status, at most two lines on stderr, no traceback, no temporary
    file, never a half-written checkpoint."""
    out = tmp_path / "run"
    proc = _spawn(["train", "--text", str(small_text), *SMALL[2:], "--steps", "100000",
                   "--eval-every", "5"], out)
    if moment == "imports":
        _wait_for(proc, "_multiarray_umath")
        proc.send_signal(sig)
    else:
        t0 = time.perf_counter()
        while not (out / "checkpoint.npz").exists() and time.perf_counter() - t0 < 120:
            time.sleep(0.05)
        proc.send_signal(sig)
        time.sleep(0.01)
        proc.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (code, 130), err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 2, err
    assert not list(tmp_path.rglob("*.tmp"))
    if (out / "checkpoint.npz").exists():
        load_checkpoint(out / "checkpoint.npz")  # never half-written


def test_cli_bounds_match_the_config_check():
    assert cli.MAX_HIDDEN == 4096 and cli.MAX_LAYERS == 16
