"""The CLI checks paths and values before any work and says what it will do: the extension of
an export, folders that cannot exist, windows longer than the streams, sampling defaults, and
messages that name the command's own flags."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_bptt.experiments.cli import main


@pytest.fixture
def charlm_checkpoint(tmp_path):
    from lstm_bptt import CharLM, CharVocab, save_checkpoint

    model = CharLM(5, hidden_size=4, num_layers=1, embedding_dim=3, dtype=np.float64, rng=0)
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"model": {"class": "CharLM", "config": model.config()},
                           "params": {k: np.array(v) for k, v in model.params.items()},
                           "extra": {"vocab": CharVocab.from_text("ab\ncd").to_array()}})
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
