"""The package layout: the core never imports the experiments; the moved names keep working."""

import subprocess
import sys


def test_importing_the_core_does_not_import_the_experiments():
    code = (
        "import sys, lstm_bptt, lstm_bptt.train, lstm_bptt.models, lstm_bptt.checkpoint\n"
        "print(sorted(m for m in sys.modules if m.startswith('lstm_bptt.experiments')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_old_top_level_names_resolve_lazily_to_the_experiments():
    import lstm_bptt
    from lstm_bptt.experiments import ngram

    assert lstm_bptt.ngram_baselines is ngram.ngram_baselines
    assert lstm_bptt.format_baselines is ngram.format_baselines


def test_unknown_attribute_still_raises_attribute_error():
    import lstm_bptt

    try:
        lstm_bptt.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_every_subpackage_is_listed_for_installation():
    # pyproject.toml lists the packages explicitly (the data folder is mapped in); a subpackage
    # missing from that list is absent after `pip install .` and `import lstm_bptt` fails there,
    # while an editable install and the tests still work.
    from pathlib import Path

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import pytest

        tomllib = pytest.importorskip("tomli")
    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / "lstm_bptt").rglob("__init__.py")
    }
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"
