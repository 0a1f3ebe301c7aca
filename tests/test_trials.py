"""Multi-seed trials: per-trial rows and the paper's summary, the same numbers wherever a trial
runs (in process, local processes, a Dask LocalCluster), atomic per-trial files, resumption
after an interruption, and clear errors."""

from __future__ import annotations

import json
import statistics
import sys

import pytest

from lstm_bptt.experiments import trials as tr
from lstm_bptt.experiments.cli import main
from lstm_bptt.experiments.trials import run_trials

# quick temporal order: T ~ 100 steps, 60 updates; 2 seeds take ~2 s
TASK, STEPS = "temporal-order", 20
COMPARED = ("seed", "solved", "metrics", "steps", "examples", "history")


def _quiet(_line):
    pass


def _same(x, y) -> bool:
    """Equal, floats to float32 rounding (rel. 1e-6): a float32 trial may differ in the last
    bits between processes, because OpenBLAS's kernels can depend on where an array lies in
    memory (seen with its Haswell kernels: a loss of 1.3862967677 in one process and
    1.3862967715 in another). Everything else (seeds, counts, flags, steps) exactly."""
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y, strict=True))
    if isinstance(x, float) and isinstance(y, float):
        return x == pytest.approx(y, rel=1e-6, abs=0)
    return type(x) is type(y) and x == y


def _assert_same_numbers(a, b):
    assert [r["seed"] for r in a] == [r["seed"] for r in b]
    for x, y in zip(a, b, strict=True):
        for k in COMPARED:
            assert _same(x[k], y[k]), (x["seed"], k, x[k], y[k])


@pytest.fixture(scope="module")
def inline():
    return run_trials(TASK, 2, quick=True, steps=STEPS, progress=False, log=_quiet)


def test_rows_keep_the_single_run_fields_and_summary_counts_them(inline):
    rows = inline["trials"]
    assert [r["seed"] for r in rows] == [0, 1]
    for r in rows:
        assert isinstance(r["solved"], bool) and r["metrics"]["test_sequences"] == 200
        assert r["cell"] == "lstm" and r["steps"] <= STEPS
    s = inline["summary"]
    assert s["trials"] == 2 and s["solved"] == sum(r["solved"] for r in rows)
    assert s["solved_fraction"] == s["solved"] / 2
    wrong = [r["metrics"]["wrong"] for r in rows]
    assert s["metrics"]["wrong"] == {"median": statistics.median(wrong), "min": min(wrong),
                                     "max": max(wrong), "mean": statistics.fmean(wrong)}
    assert s["seconds"]["sum"] == pytest.approx(sum(r["seconds"] for r in rows))
    assert inline["ran"] == 2 and inline["reused"] == 0 and inline["failed"] == {}


def test_sequences_to_success_over_solved_trials_only():
    rows = [{"solved": True, "examples": 800, "metrics": {"x": 1.0}, "seconds": 1.0},
            {"solved": False, "examples": 3200, "metrics": {"x": 3.0}, "seconds": 2.0},
            {"solved": True, "examples": 1600, "metrics": {"x": 2.0}, "seconds": 3.0},
            {"solved": True, "examples": 640, "metrics": {"x": 0.5}, "seconds": 4.0}]
    rows[1]["diverged"] = "training diverged at step 7: ..."
    s = tr.summarize(rows)
    assert s["solved"] == 3 and s["solved_fraction"] == 0.75 and s["diverged"] == 1
    assert s["sequences_to_success"] == {"median": 800, "min": 640, "max": 1600,
                                         "mean": (800 + 1600 + 640) / 3}
    assert tr.summarize(rows[1:2])["sequences_to_success"] is None


def test_local_processes_give_the_same_numbers(inline):
    par = run_trials(TASK, 2, quick=True, steps=STEPS, jobs=2, progress=False, log=_quiet)
    _assert_same_numbers(inline["trials"], par["trials"])


def test_interrupted_sweep_resumes_without_redoing_finished_trials(tmp_path, monkeypatch):
    real = tr.run_trial
    calls = []

    def interrupted_at_seed_1(spec):
        calls.append(spec["seed"])
        if spec["seed"] == 1:
            raise KeyboardInterrupt
        return real(spec)

    monkeypatch.setattr(tr, "run_trial", interrupted_at_seed_1)
    with pytest.raises(KeyboardInterrupt):
        run_trials(TASK, 3, quick=True, steps=STEPS, out_dir=tmp_path, progress=False,
                   log=_quiet)
    assert calls == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed-0.json", "sweep.json"]
    saved = (tmp_path / "seed-0.json").read_bytes()

    monkeypatch.setattr(tr, "run_trial", lambda spec: calls.append(spec["seed"]) or real(spec))
    lines = []
    rep = run_trials(TASK, 3, quick=True, steps=STEPS, out_dir=tmp_path, progress=False,
                     log=lines.append)
    assert calls == [0, 1, 1, 2]  # seed 0 was not run again
    assert rep["ran"] == 2 and rep["reused"] == 1
    assert [r["seed"] for r in rep["trials"]] == [0, 1, 2]
    assert (tmp_path / "seed-0.json").read_bytes() == saved
    assert "1 of 3 trials already done" in lines[0]
    assert "3/3 done" in lines[-1]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["summary"]["trials"] == 3
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_folder_of_another_sweep_is_refused(tmp_path):
    run_trials(TASK, 1, quick=True, steps=2, out_dir=tmp_path, progress=False, log=_quiet)
    with pytest.raises(ValueError, match=r"another sweep: steps 3 \(folder: 2\)"):
        run_trials(TASK, 1, quick=True, steps=3, out_dir=tmp_path, progress=False, log=_quiet)


def test_unreadable_trial_file_is_not_replaced(tmp_path):
    run_trials(TASK, 1, quick=True, steps=2, out_dir=tmp_path, progress=False, log=_quiet)
    (tmp_path / "seed-0.json").write_text("{half")
    with pytest.raises(ValueError, match="seed-0.json: unreadable"):
        run_trials(TASK, 1, quick=True, steps=2, out_dir=tmp_path, progress=False, log=_quiet)
    assert (tmp_path / "seed-0.json").read_text() == "{half"


@pytest.mark.parametrize("kwargs, err, match", [
    ({"seeds": 0}, ValueError, "seeds: expected a positive number"),
    ({"seeds": True}, TypeError, "seeds: expected an int"),
    ({"seeds": [1, 1]}, ValueError, "distinct"),
    ({"seeds": [-1]}, ValueError, "non-negative"),
    ({"jobs": 0}, ValueError, "jobs: expected a positive int, got 0"),
    ({"executor": "tcp://x"}, TypeError, "executor: expected a concurrent.futures.Executor"),
    ({"task": "nope"}, ValueError, "task: expected one of"),
    ({"cell": "transformer"}, ValueError, "cell: expected one of"),
    ({"steps": 0}, ValueError, "steps: expected a positive int or None, got 0"),
    ({"dtype": "int32"}, TypeError, "dtype: expected float32 or float64, got int32"),
    ({"overrides": {"learning_rate": 1}}, ValueError, r"overrides: .*\['learning_rate'\]"),
])
def test_bad_arguments(kwargs, err, match):
    kwargs = {"task": TASK, "seeds": 1, **kwargs}
    with pytest.raises(err, match=match):
        run_trials(kwargs.pop("task"), kwargs.pop("seeds"), quick=True, log=_quiet, **kwargs)


def test_dask_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(ImportError, match=r'pip install "lstm-bptt\[cluster\]"'):
        tr.dask_executor("tcp://127.0.0.1:8786")


def test_cli_seeds_json_rows_and_text_table(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["task", TASK, "--quick", "--steps", str(STEPS), "--seeds", "2", "--quiet",
            "--out-dir", str(out)]
    assert main(args + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in doc["trials"]] == [0, 1]
    assert all("solved" in r and "metrics" in r for r in doc["trials"])
    assert doc["summary"]["trials"] == 2
    assert main(args) == 0  # again: both trials reused, the table printed
    text = capsys.readouterr().out
    assert f"solved: {doc['summary']['solved']}/2" in text
    assert "2 trials reused" not in text and "0 trials run now, 2 reused" in text


def test_cli_scheduler_without_dask_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    code = main(["task", TASK, "--quick", "--seeds", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert code == 2
    assert 'pip install "lstm-bptt[cluster]"' in capsys.readouterr().err


def test_cli_interrupted_sweep_exits_130_and_says_how_to_continue(tmp_path, monkeypatch, capsys):
    real = tr.run_trial

    def interrupted_at_seed_1(spec):
        if spec["seed"] == 1:
            raise KeyboardInterrupt
        return real(spec)

    monkeypatch.setattr(tr, "run_trial", interrupted_at_seed_1)
    code = main(["task", TASK, "--quick", "--steps", "2", "--seeds", "3", "--quiet",
                 "--out-dir", str(tmp_path)])
    assert code == 130
    err = capsys.readouterr().err
    assert f"1 finished trials are saved in {tmp_path}; run the same command again" in err


def test_dask_local_cluster_gives_the_same_numbers(inline, tmp_path, capsys):
    # --scheduler local: run_trials(executor=dask_executor("local")), two worker processes
    pytest.importorskip("dask.distributed")
    code = main(["task", TASK, "--quick", "--steps", str(STEPS), "--seeds", "2", "--quiet",
                 "--scheduler", "local", "--jobs", "2", "--json", "--out-dir", str(tmp_path)])
    assert code == 0
    captured = capsys.readouterr()
    assert "trials on the Dask cluster at local" in captured.err
    _assert_same_numbers(inline["trials"], json.loads(captured.out)["trials"])


def test_rows_record_version_and_fast_path_and_mixed_setups_are_reported(inline, monkeypatch):
    import lstm_bptt

    assert all(r["version"] == lstm_bptt.__version__ for r in inline["trials"])
    assert all(r["fast_path"] == lstm_bptt.fast_path_enabled() for r in inline["trials"])
    rows = [dict(r) for r in inline["trials"]]
    rows[1]["fast_path"] = not rows[1]["fast_path"]
    lines = []
    monkeypatch.setattr(tr, "run_trial", lambda spec: rows[spec["seed"]])
    run_trials(TASK, 2, quick=True, steps=STEPS, progress=False, log=lines.append)
    assert any("different library versions or fast paths" in line for line in lines)


def test_cli_sweep_applies_the_preset_knobs_and_keeps_them_apart(tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["task", TASK, "--quick", "--steps", "2", "--seeds", "1", "--quiet", "--json"]
    assert main(args + ["--hidden-size", "8", "--lr", "0.003"]) == 0
    row = json.loads(capsys.readouterr().out)["trials"][0]
    assert row["preset"]["hidden_size"] == 8 and row["preset"]["lr"] == 0.003
    assert main(args) == 0  # without the knobs: another folder, not a clash
    assert len(list((tmp_path / "runs/trials").iterdir())) == 2
