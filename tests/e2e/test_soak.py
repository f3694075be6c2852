"""A 10-second run of ``bench/soak.py``: 16 reporting clients, 4 readers holding SSE streams.

Real processes throughout (a uvicorn server, 20 client processes). Nothing about speed is
asserted, only that nothing acknowledged was lost and SQLite never answered "locked".
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e import ROOT

pytestmark = pytest.mark.slow


def test_soak_loses_nothing_and_never_locks() -> None:
    done = subprocess.run(
        [sys.executable, "bench/soak.py", "--seconds", "10", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    print(done.stdout, done.stderr)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["reports"] > 0 and out["points_acked"] > 0
    assert out["points_lost"] == 0
    assert out["points_stored"] >= out["points_acked"]
    assert out["locked"] == 0
    assert out["errors_5xx"] == 0, out["errors"]
    assert out["sse_frames"] > 0
    assert done.returncode == 0
