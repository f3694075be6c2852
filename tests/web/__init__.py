"""Helpers of the browser tests that drive a study through the REST API meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2

from tests.e2e import wait_for


def wait_api(probe: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Call ``probe`` every 0.2 s until it returns something truthy; fail after ``timeout``.

    A browser test's probes call the API or read the page: 0.2 s polls them less often than
    the end-to-end tests' :func:`tests.e2e.wait_for` does.
    """
    return wait_for(probe, what, timeout=timeout, poll=0.2)


def trials_of(api: httpx2.Client, study_id: int) -> list[dict[str, Any]]:
    """Every trial of the study (up to 1,000), as the API lists them."""
    return list(api.get(f"/api/studies/{study_id}/trials?limit=1000").json()["data"])
