"""Task presets: every task runs in its quick form and returns the documented result; fast
tasks reach their published criterion; bad arguments raise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lstm_bptt.experiments import datasets as ds
from lstm_bptt.experiments.presets import PRESETS, TASKS, run_task

RESULT_KEYS = {"task", "cell", "solved", "diverged", "metrics", "criterion", "reference",
               "steps", "examples", "seconds", "seed", "dtype", "preset", "history"}
ISSUE_TASKS = {"reber", "adding", "adding-1997", "temporal-order", "multiplication",
               "copy-memory", "mnist1d", "digits", "airline", "sunspots"}


def _quiet(_line):
    pass


def test_registry_names_and_descriptions():
    assert set(TASKS) == ISSUE_TASKS
    assert set(PRESETS) == set(TASKS)
    assert all(isinstance(d, str) and d for d in TASKS.values())


@pytest.mark.parametrize("name", sorted(ISSUE_TASKS))
def test_quick_run_returns_documented_keys(name):
    lines = []
    r = run_task(name, quick=True, progress=False, log=lines.append)
    assert set(r) == RESULT_KEYS
    assert r["task"] == name
    assert isinstance(r["solved"], bool)
    assert 1 <= r["steps"] <= PRESETS[name].quick_steps
    assert r["examples"] == r["steps"] * PRESETS[name].batch_size
    assert r["metrics"] and all(
        isinstance(v, int) or math.isfinite(v) for v in r["metrics"].values())
    assert r["criterion"] and r["reference"]
    assert r["seconds"] >= 0 and r["seed"] == 0 and r["dtype"] == PRESETS[name].dtype
    assert r["preset"]["quick"] is True
    assert name in lines[-1]


def test_quick_adding_reaches_its_criterion():
    # Le et al. 2015 adding problem with the quick preset's short T: predicting the mean gives
    # MSE Var(U1 + U2) = 1/6; the criterion is test MSE < 0.01 on fresh sequences.
    r = run_task("adding", quick=True, progress=False, log=_quiet)
    assert r["metrics"]["baseline_mse"] == pytest.approx(1 / 6)
    assert r["metrics"]["test_mse"] < 0.01
    assert r["solved"] is True


def test_sunspots_beats_persistence_baseline():
    r = run_task("sunspots", progress=False, log=_quiet)
    # Persistence forecast recomputed from the raw data: predict year t by year t - 1, for
    # every test year 1921..2008 (the first one predicted from 1920).
    data = ds.load_sunspots()
    v = data.values
    naive = np.sqrt(np.mean((v[data.n_train:] - v[data.n_train - 1:-1]) ** 2))
    assert r["metrics"]["test_points"] == len(v) - data.n_train
    assert r["metrics"]["persistence_rmse"] == pytest.approx(naive, rel=1e-12)
    assert r["metrics"]["test_rmse"] < naive
    assert r["solved"] is True


def test_same_seed_same_result_different_seed_differs():
    a = run_task("adding-1997", quick=True, seed=3, progress=False, log=_quiet)
    b = run_task("adding-1997", quick=True, seed=3, progress=False, log=_quiet)
    c = run_task("adding-1997", quick=True, seed=4, progress=False, log=_quiet)
    # Not bit for bit: OpenBLAS float32 kernels may round differently with array alignment.
    assert a["metrics"]["test_mse"] == pytest.approx(b["metrics"]["test_mse"], rel=1e-3)
    assert a["metrics"]["test_mse"] != pytest.approx(c["metrics"]["test_mse"], rel=1e-2)


def test_dtype_and_steps_override():
    r = run_task("digits", quick=True, steps=3, dtype=np.float64, progress=False, log=_quiet)
    assert r["steps"] == 3 and r["dtype"] == "float64"


def test_bad_task_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown task 'nope'") as err:
        run_task("nope")
    for name in ISSUE_TASKS:
        assert name in str(err.value)


@pytest.mark.parametrize("steps, exc", [(0, ValueError), (-5, ValueError), (2.5, TypeError),
                                        (True, TypeError)])
def test_bad_steps(steps, exc):
    with pytest.raises(exc, match="steps: expected an int"):
        run_task("reber", steps=steps, log=_quiet)


def test_bad_dtype():
    with pytest.raises(TypeError, match="float32 or float64"):
        run_task("reber", quick=True, dtype=np.int32, log=_quiet)


def test_cell_is_recorded_and_unknown_cells_are_refused():
    r = run_task("reber", quick=True, steps=2, progress=False, log=_quiet)
    assert r["cell"] == "lstm" and r["preset"]["cell"] == "lstm"
    with pytest.raises(ValueError, match="cell: expected one of .*lstm.*, got 'transformer'"):
        run_task("reber", quick=True, cell="transformer", log=_quiet)
    with pytest.raises(TypeError, match="cell_options: expected a dict, got list"):
        run_task("reber", quick=True, cell_options=["relu"], log=_quiet)


def test_a_diverged_run_is_reported_not_solved_instead_of_raising():
    lines = []
    r = run_task("adding-1997", quick=True, steps=5, overrides={"lr": 1e38}, progress=False,
                 log=lines.append)
    assert r["solved"] is False
    assert "training diverged at step" in r["diverged"]
    assert "DIVERGED, not solved" in lines[-1]
    assert all(np.isfinite(v) for v in r["metrics"].values())  # evaluated at a good state
