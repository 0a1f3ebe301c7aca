"""The tutorials in docs/tutorials/ run as written: their Python blocks execute in order, in one
namespace, and the assertions inside them (gradient checks, accuracy) hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("*.md"))


def test_there_are_tutorials():
    assert len(TUTORIALS) >= 2


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, capsys):
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, f"{path.name} has no python blocks"
    namespace: dict = {"__name__": f"tutorial_{path.stem}"}
    for k, block in enumerate(blocks):
        exec(compile(block, f"{path.name} block {k}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.strip(), "a tutorial shows its results"
