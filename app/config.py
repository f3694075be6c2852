"""One settings object for the server, read from ``PANDACAVIAR_*`` environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app import defaults
from app.launchers import DEFAULT_LAUNCHER, LauncherName

MIB = 1024 * 1024
LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
# Host header values always accepted: the names a browser on this machine uses.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Server configuration; every field can be set as ``PANDACAVIAR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=defaults.ENV_PREFIX, extra="ignore")

    # Defaults shown by `pandacaviar serve --help` live in app.defaults (no pydantic there).
    database_url: str = defaults.DATABASE_URL
    data_dir: Path = Path(defaults.DATA_DIR)
    workers: int = Field(default_factory=defaults.workers)
    host: str = defaults.HOST
    port: int = Field(defaults.PORT, ge=0, le=65535)
    token: str | None = None
    lease_seconds: float = 30.0
    # Workers also report every this many seconds: 0.1 s keeps a pause or an edit under
    # 300 ms (p95) on a 784-512-512-10 network, where 20 steps take far longer
    # (bench/control_latency.py).
    report_seconds: float = 0.1
    reaper_seconds: float = 2.0
    # A live stream (the dashboard's) re-reads the database at least this often; a change
    # committed by this server process wakes it at once (app.storage.wakeups).
    stream_poll_seconds: float = 0.5
    # With `serve --processes N`, the supervisor replaces a server process that does not
    # answer its ping for this long (uvicorn's timeout_worker_healthcheck).
    process_healthcheck_seconds: int = Field(5, ge=1)
    # A trial fails after this many attempts in a row lost with their worker (an expired
    # lease) without a new checkpoint in between: a poison trial, not a babysitter's pauses.
    max_failures: int = Field(3, ge=1)
    max_body_bytes: int = Field(1 * MIB, gt=0)
    max_checkpoint_bytes: int = Field(512 * MIB, gt=0)
    max_upload_bytes: int = Field(64 * MIB, gt=0)
    # Extra Host header values to accept (names this server is reached by); "*" accepts any.
    # From the environment as a comma-separated list: PANDACAVIAR_ALLOWED_HOSTS=tuner.lan,10.0.0.5
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    start_dispatcher: bool = True
    # Who keeps the `workers` worker loops alive: "local" child processes, or tasks on a Dask
    # cluster (`dask_scheduler`, e.g. tcp://host:8786; a LocalCluster when unset).
    launcher: LauncherName = DEFAULT_LAUNCHER
    dask_scheduler: str | None = None
    # `pandacaviar serve --processes N` runs N server processes on one port; of those, only
    # the one holding an exclusive lock on this file launches the workers.
    launch_lock: Path | None = None
    # And they keep the workers' connections spread evenly among them through count files in
    # this directory (app.serving.spread).
    spread_dir: Path | None = None
    # Modules imported at start-up, e.g. third-party samplers and schedulers, which register
    # on import: PANDACAVIAR_PLUGINS=mypkg.hyperband,mypkg.bohb (comma-separated).
    plugins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [h.strip().lower() for h in v.split(",") if h.strip()]
        return v

    @field_validator("plugins", mode="before")
    @classmethod
    def _split_plugins(cls, v: Any) -> Any:
        return [m.strip() for m in v.split(",") if m.strip()] if isinstance(v, str) else v

    @field_validator("workers")
    @classmethod
    def _workers_non_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"workers: got {v}, allowed: an integer >= 0")
        return v

    @field_validator("lease_seconds", "report_seconds", "reaper_seconds", "stream_poll_seconds")
    @classmethod
    def _positive_seconds(cls, v: float) -> float:
        if not v > 0 or v == float("inf"):
            raise ValueError(f"got {v}, allowed: a finite number of seconds > 0")
        return v

    @model_validator(mode="after")
    def _token_for_wide_bind(self) -> Settings:
        # Anyone on the network could pause or fork trials: refuse unless a token guards it.
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"host: {self.host!r} is reachable from other machines; "
                "set PANDACAVIAR_TOKEN (or --token) or bind 127.0.0.1"
            )
        return self

    @property
    def checkpoint_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def worker_cache_dir(self) -> Path:
        """Where the workers this server launches cache uploaded data sets."""
        return self.data_dir / "worker-cache"

    @property
    def token_file(self) -> Path:
        """Where ``pandacaviar serve`` keeps the generated API token (mode 0600)."""
        return self.data_dir / "token"

    @property
    def host_allowlist(self) -> frozenset[str]:
        """Host header values accepted (without port): local names, the bound host, extras."""
        bound = {self.host.strip("[]").lower()} - WILDCARD_HOSTS
        return LOCAL_HOSTS | bound | {h.strip("[]").lower() for h in self.allowed_hosts}

    @property
    def server_url(self) -> str:
        """The URL local workers use to reach this server."""
        host = self.host
        if host in {"0.0.0.0", ""}:
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def get_settings() -> Settings:
    """Settings from the environment (a fresh object: tests build their own)."""
    return Settings()
