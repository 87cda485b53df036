"""Views never touch clinical models: reads go through selectors, writes through services (DESIGN.md §4)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLINICAL_MODELS = {
    name
    for name, value in vars(__import__("records.models", fromlist=["*"])).items()
    if isinstance(value, type) and getattr(value, "_meta", None) is not None and value.__module__ == "records.models"
}
VIEW_MODULES = sorted(
    [
        *ROOT.glob("*/views.py"),
        *ROOT.glob("*/views_*.py"),
        *ROOT.glob("*/views/*.py"),
        ROOT / "records" / "dashboard_panels.py",
    ],
)


def test_there_are_view_modules_and_clinical_models_to_check() -> None:
    # records/views/ is a package: every module of it is checked.
    assert {ROOT / "records" / "views" / name for name in ("chart.py", "worklist.py", "registration.py")} <= set(
        VIEW_MODULES
    )
    assert {"Patient", "Observation", "ClinicalNote", "Attachment"} <= CLINICAL_MODELS


@pytest.mark.parametrize("path", VIEW_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_view_module_does_not_query_clinical_models(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "records.models":
            names = {alias.name for alias in node.names}
            if names & CLINICAL_MODELS:
                problems.append(f"line {node.lineno}: imports {sorted(names & CLINICAL_MODELS)} from records.models")
        if isinstance(node, ast.Attribute) and node.attr == "objects":
            base = node.value
            label = base.id if isinstance(base, ast.Name) else ast.unparse(base)
            if label.split(".")[-1] in CLINICAL_MODELS:
                problems.append(f"line {node.lineno}: {label}.objects")
        if isinstance(node, ast.Attribute) and node.attr in {"raw", "extra"}:
            problems.append(f"line {node.lineno}: .{node.attr}()")
    assert problems == []
