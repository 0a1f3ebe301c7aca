"""The README's Python examples run as written and do what they say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), namespace)
    if "history" in namespace:  # the ten-line training example must actually learn
        assert namespace["history"][-1]["loss"] < 0.5 * namespace["history"][0]["loss"]
    if "report" in namespace:
        assert namespace["report"].passed
