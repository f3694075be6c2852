"""Two real processes racing to claim 50 trials from a real uvicorn server."""

from __future__ import annotations

import multiprocessing as mp

import httpx2
import pytest

N_TRIALS = 50


def claim_until_empty(url: str, worker: str) -> list[tuple[int, int]]:
    """Claim over HTTP until the queue is empty; the (trial, attempt) pairs won."""
    won: list[tuple[int, int]] = []
    with httpx2.Client(base_url=url, timeout=30) as http:
        while True:
            r = http.post("/api/workers/claim", json={"worker": worker})
            if r.status_code == 204:
                return won
            r.raise_for_status()
            won.append((r.json()["trial_id"], r.json()["attempt"]))


@pytest.mark.slow
def test_two_processes_claim_every_trial_exactly_once(live_server: str) -> None:
    with httpx2.Client(base_url=live_server, timeout=30) as http:
        study = http.post("/api/studies", json={"name": "race", "mode": "panda"}).json()
        url = f"/api/studies/{study['id']}/trials"
        ids = [http.post(url, json={"hparams": {"seed": i}}).json()["id"] for i in range(N_TRIALS)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(claim_until_empty, [(live_server, "a"), (live_server, "b")])
    claimed = [tid for result in results for tid, _ in result]
    assert sorted(claimed) == sorted(ids)  # every trial once: none lost, none twice
    assert all(attempt == 1 for result in results for _, attempt in result)
    with httpx2.Client(base_url=live_server, timeout=30) as http:
        listed = http.get(f"/api/studies/{study['id']}/trials", params={"limit": 100}).json()
    assert {t["state"] for t in listed["data"]} == {"running"}
    assert {t["worker"] for t in listed["data"]} <= {"a", "b"}
