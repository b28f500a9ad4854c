"""The docs (issue 32, item 3): the Python page runs as it is written, and what it prints holds."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from splitnn.onnxsplit.artifacts.plan_file import VerticalPlanFile

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_the_python_page_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/python.md: build a sample, analyze it, partition it for three devices, load a plan back, run its bench,
    read predicted and measured, and catch an error; every block in turn, in one namespace, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(DOCS / "python.md")
    assert len(blocks) == 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python.md", "exec"), namespace)  # noqa: S102
    plans, report = namespace["plans"], namespace["report"]
    assert sorted(plans) == ["host", "raspberry-pi-4", "rockpro64"]
    assert all(isinstance(plan, VerticalPlanFile) and plan.verification.passed for plan in plans.values())
    assert {plan.device_profile.name for plan in plans.values()} == set(plans)
    assert report.ok == 3 and report.outputs_match is True and report.stages["e2e_s"].p50 > 0
    assert report.predicted_s == pytest.approx(plans["rockpro64"].predicted.total_s, rel=0.5)
    printed = capsys.readouterr().out
    assert "M MACs in" in printed and "outputs match: True" in printed
    assert "unknown device profile 'nano'" in printed
