"""trainer/ and app/tuning/ import no web, database or HTTP library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = [
    "fastapi",
    "starlette",
    "sqlalchemy",
    "pydantic",
    "pydantic_settings",
    "httpx",
    "httpx2",
    "uvicorn",
    "requests",
]

PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    if not info.name.rsplit(".", 1)[-1].startswith("__"):
        importlib.import_module(info.name)
forbidden = set(json.loads(sys.argv[2]))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in forbidden)))
"""


@pytest.mark.parametrize("package", ["trainer", "app.tuning"])
def test_package_imports_no_web_stack(package: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, package, json.dumps(FORBIDDEN)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
