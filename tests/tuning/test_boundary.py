"""app/tuning stays pure: NumPy, SciPy, scikit-learn and the standard library only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

TUNING = Path(__file__).resolve().parents[2] / "app" / "tuning"
ALLOWED = {"numpy", "scipy", "sklearn"} | set(sys.stdlib_module_names)


def imported_modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("path", sorted(TUNING.glob("*.py")), ids=lambda p: p.name)
def test_module_imports_only_allowed_packages(path: Path) -> None:
    for module in imported_modules(path):
        top = module.split(".")[0]
        assert top in ALLOWED or module.startswith("app.tuning"), f"{path.name}: {module}"


def test_only_importance_uses_scikit_learn() -> None:
    users = {
        p.name
        for p in TUNING.glob("*.py")
        if any(m.startswith("sklearn") for m in imported_modules(p))
    }
    assert users == {"importance.py"}
