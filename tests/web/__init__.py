"""Helpers of the browser tests that drive a study through the REST API meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx2


def wait_api(probe: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Call ``probe`` every 0.2 s until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def trials_of(api: httpx2.Client, study_id: int) -> list[dict[str, Any]]:
    """Every trial of the study (up to 1,000), as the API lists them."""
    return list(api.get(f"/api/studies/{study_id}/trials?limit=1000").json()["data"])
