"""HTML routes: each renders one template with ids; the page's JavaScript fetches the JSON API.

Only presentation data is prepared here: the hyperparameter catalogue in the order of the course
notes, with the hint and the pre-filled search range each row of the new-study form shows. A
study or trial page first checks that its id exists, and answers 404 with a page saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.deps import SessionDep
from app.schemas.studies import (
    MAX_BUDGET_TRIALS,
    MAX_EPOCHS,
    MAX_PARALLELISM,
    MAX_SEED,
    MIN_EPOCHS,
    MIN_SEED,
    STUDY_WORDS,
)
from app.serving import security
from app.storage.models import Study, Trial
from trainer.config import ADJUSTABLE, HPARAM_SPECS, HParamSpec
from trainer.optimizers import OPTIMIZER_HPARAMS

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parents[2] / "templates")
router = APIRouter(include_in_schema=False)

# The course notes' order of importance (1 = must tune ... 7 = leave at the default).
IMPORTANCE: dict[str, tuple[int, str]] = {
    "learning_rate": (1, "must tune"),
    "momentum": (2, "should tune"),
    "batch_size": (3, "should tune"),
    "hidden_units": (4, "should tune"),
    "num_layers": (5, "rarely tuned"),
    "lr_decay": (6, "rarely tuned"),
    "beta1": (7, "leave at the default"),
    "beta2": (7, "leave at the default"),
    "epsilon": (7, "leave at the default"),
}

# Pre-filled ranges and scales for a caviar search, following the notes.
RANGES: dict[str, dict[str, Any]] = {
    "learning_rate": {"dist": "log_uniform", "low": 1e-4, "high": 1.0},
    "momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
    "beta1": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
    "beta2": {"dist": "one_minus_log_uniform", "low": 0.99, "high": 0.9999},
    "epsilon": {"dist": "log_uniform", "low": 1e-10, "high": 1e-6},
    "batch_size": {"dist": "log_int", "low": 16, "high": 256},
    "hidden_units": {"dist": "int_uniform", "low": 50, "high": 100},
    "num_layers": {"dist": "int_uniform", "low": 2, "high": 4},
    "lr_decay": {"dist": "log_uniform", "low": 1e-3, "high": 1.0},
    "l2": {"dist": "log_uniform", "low": 1e-5, "high": 1e-1},
    "keep_prob": {"dist": "uniform", "low": 0.5, "high": 1.0},
    "bn_momentum": {"dist": "one_minus_log_uniform", "low": 0.9, "high": 0.999},
    "decay_every": {"dist": "int_uniform", "low": 1, "high": 20},
    "seed": {"dist": "int_uniform", "low": 0, "high": 1000},
}


def _natural_scale(spec: HParamSpec) -> str:
    """The distribution a value of ``spec`` is written on when a study does not range it."""
    if spec.choices:
        return "choice"
    if spec.name in RANGES:
        return str(RANGES[spec.name]["dist"])
    return {bool: "bool", int: "int_uniform"}.get(spec.type, "uniform")


# Every hyperparameter's natural scale (the one the new-study form pre-fills), written into
# every page for static/js/format.js: learning rates in 2.11e-4, momentum by its 1 - beta.
HPARAM_SCALES: dict[str, str] = {name: _natural_scale(s) for name, s in HPARAM_SPECS.items()}
TEMPLATES.env.globals["hparam_scales"] = HPARAM_SCALES
# Ranged by default in a new caviar study; the rest start fixed at their defaults.
RANGED_BY_DEFAULT = frozenset({"learning_rate", "batch_size", "hidden_units"})
# Study-level fields rather than rows of the hyperparameter table.
NOT_IN_FORM = frozenset({"epochs"})
# Primary keys are 64-bit: a longer id names no row, and binding it would raise OverflowError.
ID_RANGE = range(-(2**63), 2**63)


@dataclass(frozen=True)
class HParamRow:
    """What one row of the new-study form shows."""

    spec: HParamSpec
    kind: str  # "float", "int", "bool" or "choice"
    rank: int | None
    rank_text: str
    range: dict[str, Any] | None
    ranged: bool


def _kind(spec: HParamSpec) -> str:
    if spec.choices:
        return "choice"
    return {bool: "bool", int: "int"}.get(spec.type, "float")


def hparam_rows() -> list[HParamRow]:
    """Every hyperparameter of the form, in the notes' order of importance."""
    rows = []
    for name, spec in HPARAM_SPECS.items():
        if name in NOT_IN_FORM:
            continue
        rank, text = IMPORTANCE.get(name, (None, ""))
        default_range = RANGES.get(name)
        if spec.choices:
            default_range = {"dist": "choice", "values": list(spec.choices)}
        rows.append(
            HParamRow(spec, _kind(spec), rank, text, default_range, name in RANGED_BY_DEFAULT)
        )
    return sorted(rows, key=lambda r: r.rank or 99)


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def _exists(session: Session, model: type[Study], id_: int) -> bool:
    """Whether the row exists; only its id is read, the page's JavaScript loads the rest."""
    if id_ not in ID_RANGE:
        return False
    return session.scalar(select(model.id).where(model.id == id_)) is not None


def _trial_number(session: Session, id_: int) -> int | None:
    """The trial's number in its study (what the pages call it: "Trial 3"), None if missing."""
    if id_ not in ID_RANGE:
        return None
    return session.scalar(select(Trial.number).where(Trial.id == id_))


def _not_found(request: Request, kind: str, id_: int) -> HTMLResponse:
    """404 with a page naming what is missing; without it the page would say "Loading…" forever."""
    return _render(request, "not_found.html", status_code=404, kind=kind, id=id_)


@router.get("/", response_class=HTMLResponse)
def studies_page(request: Request) -> HTMLResponse:
    """Studies list, with a teaching panel on a first visit."""
    return _render(request, "studies.html")


@router.get("/studies/new", response_class=HTMLResponse)
def new_study_page(request: Request) -> HTMLResponse:
    """The new-study form: panda or caviar, every hyperparameter fixed or ranged."""
    # The form checks what it can before sending, in the words and bounds the API's 422 uses.
    bounds = {
        "epochs": (MIN_EPOCHS, MAX_EPOCHS),
        "seed": (MIN_SEED, MAX_SEED),
        "budget.trials": (1, MAX_BUDGET_TRIALS),
        "parallelism": (1, MAX_PARALLELISM),
    }
    return _render(
        request,
        "new_study.html",
        rows=hparam_rows(),
        epochs_default=HPARAM_SPECS["epochs"].default,
        words=STUDY_WORDS,
        bounds=bounds,
        optimizer_hparams=OPTIMIZER_HPARAMS,
        optimizer_default=HPARAM_SPECS["optimizer"].default,
    )


@router.get("/studies/{study_id}", response_class=HTMLResponse)
def study_page(request: Request, study_id: int, session: SessionDep) -> HTMLResponse:
    """One study: trials table, curves, parallel coordinates, scatter, importance."""
    if not _exists(session, Study, study_id):
        return _not_found(request, "Study", study_id)
    return _render(request, "study.html", study_id=study_id)


@router.get("/trials/{trial_id}", response_class=HTMLResponse)
def trial_page(request: Request, trial_id: int, session: SessionDep) -> HTMLResponse:
    """The panda cockpit of one trial."""
    number = _trial_number(session, trial_id)
    if number is None:
        return _not_found(request, "Trial", trial_id)
    adjustable = [spec for name, spec in HPARAM_SPECS.items() if name in ADJUSTABLE]
    return _render(request, "trial.html", trial_id=trial_id, number=number, adjustable=adjustable)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, trials: str = Query("", max_length=10_000)) -> HTMLResponse:
    """Selected trials side by side: ``/compare?trials=1,2,3``."""
    ids = [int(t) for t in trials.split(",") if t.strip().isdigit()]
    return _render(request, "compare.html", trial_ids=ids)


def _local(next_: str) -> str:
    # Only a path of this server: "//evil.example" or "https://..." would be an open redirect.
    return next_ if next_.startswith("/") and not next_.startswith(("//", "/\\")) else "/"


@router.get("/login", response_class=HTMLResponse, response_model=None)
def login_page(request: Request, next: str = "/") -> HTMLResponse | RedirectResponse:
    """Paste the API token once; the browser keeps a session cookie."""
    if not request.app.state.settings.token:
        return RedirectResponse(_local(next), status_code=303)
    return _render(request, "login.html", next=_local(next), error="")


@router.post("/login", response_class=HTMLResponse, response_model=None)
async def login(request: Request) -> HTMLResponse | RedirectResponse:
    """Check the token; set the HttpOnly, SameSite=Strict session cookie on success."""
    token: str | None = request.app.state.settings.token
    form = await request.form()
    given, next_ = str(form.get("token", "")).strip(), _local(str(form.get("next", "/")))
    if token and not security.token_matches(token, given):
        error = "That is not the API token."
        return _render(request, "login.html", status_code=401, next=next_, error=error)
    done = RedirectResponse(next_, status_code=303)
    if token:
        secure = request.url.scheme == "https"
        done.headers["set-cookie"] = security.session_cookie_header(token, secure=secure)
    return done
