"""Building blocks shared by the wire types: strict models, bounded names, budgets."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from trainer.config import HPARAM_SPECS, HParamError

# Steps and attempts are stored as 32-bit integers (PostgreSQL's INTEGER): a larger value is a
# 422 naming the field, not a database error.
MAX_INT32 = 2**31 - 1

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=100)]


def check_spec(name: str, value: Any) -> Any:
    """The trainer's check of one value, raised as the ``ValueError`` pydantic reports."""
    try:
        return HPARAM_SPECS[name].check(value)
    except HParamError as exc:
        raise ValueError(exc.message) from None


def plain(words: str, **by_kind: str) -> WrapValidator:
    """A field's errors in plain words that name what is allowed: ``Annotated[int, Field(ge=1,
    le=9), plain("a whole number of trials from 1 to 9")]`` answers that sentence for a
    missing number, a string, 0 or 10 alike. ``by_kind`` words one kind of pydantic error
    differently (``string_too_long="at most 200 characters"``). The JSON schema is unchanged.
    """

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            kinds = [e["type"] for e in exc.errors()]
            message = next((by_kind[k] for k in kinds if k in by_kind), words)
            raise PydanticCustomError("plain", message) from None

    return WrapValidator(check)


def whole_number(low: int, high: int, of: str = "") -> str:
    """``"a whole number of trials from 1 to 100000"``: a bounded integer, in words."""
    return f"a whole number{f' of {of}' if of else ''} from {low} to {high}"


class Strict(BaseModel):
    """A request body: an unknown field (a typo) is a 422, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Budget(BaseModel):
    """A study's or a round's budget as the API shows it: only the key that is set."""

    trials: int | None = None
    epochs: int | None = None

    @model_serializer(mode="wrap")
    def _set_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}
