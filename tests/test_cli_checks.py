"""The CLI checks paths and values before any work and says what it will do: the extension of
an export, folders that cannot exist, windows longer than the streams, sampling defaults, and
messages that name the command's own flags."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_bptt.experiments.cli import main


def _checkpoint(path, chars):
    """An untrained CharLM over ``chars`` saved as `train` would (the fields sample/export read)."""
    from lstm_bptt import CharLM, CharVocab, save_checkpoint

    vocab = CharVocab.from_text(chars)
    model = CharLM(len(vocab), hidden_size=4, num_layers=1, embedding_dim=3, dtype=np.float64,
                   rng=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"model": {"class": "CharLM", "config": model.config()},
                           "params": {k: np.array(v) for k, v in model.params.items()},
                           "extra": {"vocab": vocab.to_array()}})
    return model, vocab


@pytest.fixture
def charlm_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.npz"
    _checkpoint(path, "\tab\ncd")
    return path


# ----------------------------------------------------------------------------------- export
@pytest.mark.parametrize("fmt, name, expected", [
    ("safetensors", "x.npz", "expected a .safetensors file for --format safetensors, got .npz"),
    ("keras", "k.safetensors", "expected a .npz file for --format keras, got .safetensors"),
    ("flax", "f", "expected a .npz file for --format flax, got no extension"),
])
def test_export_out_extension_must_match_the_format(charlm_checkpoint, tmp_path, capsys, fmt,
                                                    name, expected):
    out = tmp_path / name
    assert main(["export", "--checkpoint", str(charlm_checkpoint), "--format", fmt,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out: " + expected in err[0]
    assert not out.exists()


def test_export_out_directory_must_exist(charlm_checkpoint, tmp_path, capsys):
    out = tmp_path / "missing" / "x.safetensors"
    assert main(["export", "--checkpoint", str(charlm_checkpoint), "--format", "safetensors",
                 "--out", str(out)]) == 2
    assert f"--out: directory not found: {out.parent}" in capsys.readouterr().err
    assert not out.parent.exists()


# ----------------------------------------------------------------------------------- train
SMALL = ["--steps", "2", "--eval-every", "1", "--hidden-size", "8", "--embedding-dim", "4",
         "--seq-length", "16", "--quiet", "--sample-length", "0", "--threads", "1"]


@pytest.fixture
def small_text(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("hello world, hello lstm.\n" * 40)  # 1,000 characters
    return path


def test_out_dir_under_a_file_is_refused_before_loading(small_text, capsys, monkeypatch):
    from lstm_bptt.experiments import train_job

    def no_loading(*a, **k):
        raise AssertionError("the text was loaded before --out-dir was checked")

    monkeypatch.setattr(train_job, "load_corpus", no_loading)
    out = small_text / "sub" / "deeper"
    assert main(["train", "--text", str(small_text), "--out-dir", str(out), *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lstm-bptt train: error: --out-dir: ")
    assert f"{small_text} is a file" in err[0] and "Errno" not in err[0]


def test_out_dir_that_cannot_be_written_is_refused_before_loading(small_text, capsys,
                                                                  monkeypatch):
    from lstm_bptt.experiments import train_job

    monkeypatch.setattr(train_job, "load_corpus", None)  # calling it would fail loudly
    locked = small_text.parent / "locked"
    locked.mkdir()
    locked.chmod(0o555)  # no write bit for anyone (refused even for root)
    try:
        out = locked / "new" / "run"
        assert main(["train", "--text", str(small_text), "--out-dir", str(out), *SMALL]) == 2
        err = capsys.readouterr().err
        assert f"--out-dir: cannot write to {out} (in {locked}): permission denied" in err
        assert not (locked / "new").exists()
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("flags, message", [
    # 1,000 characters: 900 for training, 32 streams of 28 characters = 27 steps each
    (["--seq-length", "28"], "--seq-length: expected at most 27, the steps of one of the 32 "
                             "training streams (900 characters / --batch-size), got 28; "
                             "lower --seq-length or --batch-size"),
    (["--seq-length", "8", "--k2", "100"], "--k2: expected at most 27, the steps of one of "
                                           "the 32 training streams"),
])
def test_window_longer_than_a_training_stream_is_refused(small_text, tmp_path, capsys, flags,
                                                         message):
    out = tmp_path / "run"
    assert main(["train", "--text", str(small_text), "--out-dir", str(out), *SMALL,
                 *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_tbptt_stream_refuses_a_window_longer_than_its_streams():
    from lstm_bptt.train import TBPTTStream

    streams = np.zeros((11, 2), int)  # 10 steps of next-step prediction
    assert TBPTTStream(streams, 10).num_batches == 1
    with pytest.raises(ValueError, match=r"k1: expected at most the 10 steps of a stream "
                                         r"\(streams \(11, 2\)\), got 11"):
        TBPTTStream(streams, 11)
    labels = np.zeros((11, 2), int)  # a target for every step: 11 steps
    assert TBPTTStream(streams, 11, targets=labels).num_batches == 1
    with pytest.raises(ValueError, match="k1: expected at most the 11 steps"):
        TBPTTStream(streams, 12, targets=labels)


# ----------------------------------------------------------------------------------- sample
@pytest.mark.parametrize("flags", [["--temperature", "0.5"], ["--top-k", "2"],
                                   ["--temperature", "0.8", "--top-k", "3"]])
def test_sample_greedy_refuses_temperature_and_top_k(charlm_checkpoint, capsys, flags):
    assert main(["sample", "--checkpoint", str(charlm_checkpoint), "--greedy", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lstm-bptt sample: error: --greedy: picks the most likely character; "
                   "--temperature/--top-k do not apply"]


def test_sample_reads_the_default_train_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--length", "5"]) == 2  # nothing trained here yet
    assert "checkpoint not found: runs/charlm/checkpoint.npz" in capsys.readouterr().err
    _checkpoint(tmp_path / "runs" / "charlm" / "checkpoint.npz", "abc")
    assert main(["sample", "--length", "5"]) == 0
    out = capsys.readouterr().out
    assert len(out) == 6 and set(out[:5]) <= set("abc")


def test_sample_without_prime_starts_after_a_newline(tmp_path, capsys):
    model, vocab = _checkpoint(tmp_path / "c.npz", "\tab\ncd")  # ids: \t \n a b c d
    assert main(["sample", "--checkpoint", str(tmp_path / "c.npz"), "--length", "6",
                 "--greedy"]) == 0
    out = capsys.readouterr().out[:-1]
    logits = model.forward(np.array([[1]]))[0]  # (1, 1, V) after "\n", from a zero state
    assert out[0] == vocab.chars[int(np.argmax(logits[-1, 0]))] != "\t"
    assert out == vocab.decode(model.sample(6, [1], greedy=True))
    # without a newline in the vocabulary: as before, a uniform first character
    model, vocab = _checkpoint(tmp_path / "d.npz", "\tabcd")
    assert main(["sample", "--checkpoint", str(tmp_path / "d.npz"), "--length", "6",
                 "--greedy"]) == 0
    assert capsys.readouterr().out[:-1] == vocab.decode(model.sample(6, None, greedy=True))


# ----------------------------------------------------------------------------------- messages
def test_divergence_message_names_the_flags(small_text, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--text", str(small_text), "--out-dir", str(out), *SMALL,
                 "--no-baselines", "--optimizer", "sgd", "--lr", "1e3", "--clip", "0",
                 "--schedule", "constant"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("lstm-bptt train: error: training diverged at step ")
    assert ("the last state that passed the checks. Try a lower --lr, a --clip norm (e.g. 1), "
            "--dtype float64 or --on-divergence rollback-and-lower-lr. No checkpoint was "
            "written (none had passed the checks).") in err[0]
    assert "clip_norm" not in err[0] and "spike_factor" not in err[0]


def test_typo_suggestions_come_after_the_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--hiden-size", "10", "--lrr", "0.1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("lstm-bptt train: error: unrecognized arguments: --hiden-size 10 --lrr 0.1 "
                       "(--hiden-size: did you mean --hidden-size?) (--lrr: did you mean --lr?)")
    with pytest.raises(SystemExit):
        main(["train", "--hiden-size=10"])
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "unrecognized arguments: --hiden-size=10 (did you mean --hidden-size?)")


def test_run_header_counts_in_the_singular(small_text, tmp_path, capsys):
    assert main(["train", "--text", str(small_text), "--out-dir", str(tmp_path / "run"), *SMALL,
                 "--no-baselines", "--steps", "1", "--batch-size", "1", "--seq-length", "1"]) == 0
    out = capsys.readouterr().out
    assert "; 1 stream x 1 step (k1); 1 step\n" in out and "1 steps" not in out


def test_resume_reuses_the_runs_baselines(small_text, tmp_path, capsys, monkeypatch):
    from lstm_bptt.experiments import ngram

    run = ["train", "--text", str(small_text), *SMALL, "--schedule", "constant"]
    quiet, full = tmp_path / "quiet", tmp_path / "full"
    assert main([*run, "--out-dir", str(quiet), "--no-baselines"]) == 0
    assert main([*run, "--out-dir", str(full)]) == 0
    computed = (full / "baselines.json").read_text()
    capsys.readouterr()

    def no_baselines(*a, **k):
        raise AssertionError("the baselines were computed again")

    monkeypatch.setattr(ngram, "ngram_baselines", no_baselines)
    # at its last step already: nothing to do, and nothing computed first
    assert main([*run, "--out-dir", str(quiet), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and "n-gram" not in out
    # going on: the run's own baselines (none for a --no-baselines run), as it wrote them
    assert main([*run, "--out-dir", str(quiet), "--resume", "--steps", "3"]) == 0
    assert "n-gram" not in capsys.readouterr().out
    assert main([*run, "--out-dir", str(full), "--resume", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert f"n-gram baselines on the validation split (from {full / 'baselines.json'})" in out
    assert (full / "baselines.json").read_text() == computed
