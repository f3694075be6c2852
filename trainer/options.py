"""Task options: typed, range-checked parameters of a task (size, noise, classes, a path)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from trainer.datafiles import DataError


class OptionType(Enum):
    INT = "int"
    FLOAT = "float"
    STR = "str"
    FLOAT_LIST = "float_list"


@dataclass(frozen=True)
class OptionSpec:
    """One task option: type, default (None: required), inclusive range, help text.

    ``low``/``high`` bound numbers and every element of a ``FLOAT_LIST`` of ``length`` items.
    """

    name: str
    type: OptionType
    default: Any
    low: float | None = None
    high: float | None = None
    help: str = ""
    length: int | None = None

    def range_text(self) -> str:
        """The allowed values in words, as error messages show them."""
        bounds = f"in [{self.low:g}, {self.high:g}]" if self.low is not None else ""
        if self.type is OptionType.INT:
            return f"an integer {bounds}".strip()
        if self.type is OptionType.FLOAT:
            return f"a finite number {bounds}".strip()
        if self.type is OptionType.FLOAT_LIST:
            return f"a list of {self.length} finite numbers {bounds}".strip()
        return "a non-empty string"

    def fill(self) -> Any:
        """The default value, or :class:`DataError` when the option is required."""
        if self.default is None:
            raise DataError(f"option {self.name!r} is required: {self.range_text()}")
        return list(self.default) if self.type is OptionType.FLOAT_LIST else self.default

    def check(self, value: Any) -> Any:
        """Return ``value`` coerced to this option's type, or raise :class:`DataError`."""
        out = self._coerce(value)
        if out is None:
            raise DataError(f"option {self.name!r}: got {value!r}, allowed: {self.range_text()}")
        return out

    def _coerce(self, value: Any) -> Any:
        if self.type is OptionType.STR:
            return value if isinstance(value, str) and value and "\0" not in value else None
        if self.type is OptionType.FLOAT_LIST:
            if not isinstance(value, list | tuple) or len(value) != self.length:
                return None
            items = [self._number(v, integer=False) for v in value]
            return None if any(v is None for v in items) else items
        return self._number(value, integer=self.type is OptionType.INT)

    def _number(self, value: Any, *, integer: bool) -> float | int | None:
        # bool is an int subclass, but True is never a sensible sample count or noise level.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            as_float = float(value)
        except OverflowError:  # an int beyond float range, e.g. 10**400 from JSON
            return None
        if not math.isfinite(as_float) or (integer and not as_float.is_integer()):
            return None
        out = int(value) if integer else float(value)
        assert self.low is not None and self.high is not None  # numeric options have both
        return out if self.low <= out <= self.high else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form; ``default`` None means the option is required."""
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return {
            "name": self.name,
            "type": self.type.value,
            "default": default,
            "low": self.low,
            "high": self.high,
            "length": self.length,
            "help": self.help,
            "required": self.default is None,
        }
