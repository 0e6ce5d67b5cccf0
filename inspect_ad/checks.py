"""The one vocabulary of value checks. A config dataclass declares a constraint per field in its
``_constraints`` table (as scikit-learn's ``_parameter_constraints``) and calls :func:`validate`
in ``__post_init__``; bundle loading checks a saved config against the same table, and the command
line builds its option types from it (``cli.common.option_type``). Each failed check raises the
one-line :class:`~inspect_ad.errors.ConfigError` naming the option, its value and what it must be."""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable

from inspect_ad.errors import ConfigError

MAX_SIZE = 4096   # an input side above it would need gigabytes per image before the first result


def is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def require(ok: bool, name: str, value: Any, must: str) -> None:
    """``name=value: must be <must>`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{name}={value!r}: must be {must}")


@dataclass(frozen=True)
class Constraint:
    """What a value must be (``what``, for messages) and the test. ``kind``, ``low``, ``high`` and
    ``choices`` describe integer and number ranges and choices for the command line's option types."""

    what: str
    test: Callable[[Any], bool]
    kind: str = "other"            # "int", "number", "choice", "flag" or "other"
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple = ()

    def ok(self, value: Any) -> bool:
        return bool(self.test(value))

    def check(self, name: str, value: Any) -> None:
        if self.kind == "choice" and not self.ok(value):
            raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(map(str, self.choices))}")
        require(self.ok(value), name, value, self.what)


def Int(low: int = 1, high: int | None = None) -> Constraint:
    what = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    return Constraint(what, lambda v: is_int(v) and low <= v and (high is None or v <= high), "int", low, high)


def Number(low: float = 0.0, high: float = math.inf, *, open_low: bool = False, open_high: bool = False) -> Constraint:
    if high == math.inf:
        what = "a finite number" if low == -math.inf else f"a finite number {'>' if open_low else '>='} {low:g}"
    else:
        what = f"a finite number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"

    def test(v):
        return is_number(v) and (v > low if open_low else v >= low) and (v < high if open_high else v <= high)
    return Constraint(what, test, "number", low, high, open_low, open_high)


def Options(*choices: Any) -> Constraint:
    return Constraint(f"one of {', '.join(map(str, choices))}", lambda v: isinstance(v, str) and v in choices,
                      "choice", choices=tuple(choices))


def Ints(low: int = 1, allow_empty: bool = False) -> Constraint:
    """A list (or tuple) of integers >= ``low``: layer widths, stages, scales."""
    return Constraint(f"a {'' if allow_empty else 'non-empty '}list of integers >= {low}",
                      lambda v: isinstance(v, (tuple, list)) and (allow_empty or len(v) > 0)
                      and all(is_int(x) and x >= low for x in v))


def Odd() -> Constraint:
    return Constraint("an odd integer >= 1 (1, 3, 5, ...)", lambda v: is_int(v) and v >= 1 and v % 2 == 1)


def PowerOfTwo() -> Constraint:
    return Constraint("a power of 2 (1, 2, 4, 8, 16, ...)", lambda v: is_int(v) and v >= 1 and not v & (v - 1))


def MultipleOf(base: int, why: str) -> Constraint:
    return Constraint(f"a multiple of {base} ({why})", lambda v: is_int(v) and v >= base and v % base == 0)


def Flag() -> Constraint:
    return Constraint("true or false", lambda v: isinstance(v, bool), "flag")


def Text() -> Constraint:
    return Constraint("a string", lambda v: isinstance(v, str))


def Satisfies(what: str, test: Callable[[Any], bool]) -> Constraint:
    """A rule the others do not spell (``in_channels`` 1 or 3, an object of numbers)."""
    return Constraint(what, test)


def as_size(value: Any) -> Any:
    """An input size as configs hold it: one side (square) or a (height, width) tuple; a JSON list
    or a square pair becomes what a fit made, so a loaded bundle compares equal to its model."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(is_int, value)):
        h, w = (int(v) for v in value)
        return h if h == w else (h, w)
    return value


def size_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of an input size."""
    return (size, size) if is_int(size) else (int(size[0]), int(size[1]))


def Size(multiple: int = 1, why: str = "") -> Constraint:
    """An input size: one side, or a (height, width) pair, each in [8, MAX_SIZE] and a multiple
    of ``multiple``."""
    extra = f", multiples of {multiple}{f' ({why})' if why else ''}" if multiple > 1 else ""

    def test(value):
        sides = list(value) if isinstance(value, (list, tuple)) else [value]
        return len(sides) in (1, 2) and all(is_int(v) and 8 <= v <= MAX_SIZE and v % multiple == 0 for v in sides)
    return Constraint(f"one side or a (height, width) pair of integers in [8, {MAX_SIZE}]{extra}", test)


def Optional(inner: Constraint) -> Constraint:
    """None, or a value ``inner`` accepts (its range stays for the command line's types)."""
    return Constraint(f"null or {inner.what}", lambda v: v is None or inner.ok(v), inner.kind, inner.low, inner.high,
                      inner.open_low, inner.open_high, inner.choices)


def validate(config: Any) -> None:
    """Check every field of ``config`` that its class's ``_constraints`` table names."""
    for name, constraint in type(config)._constraints.items():
        constraint.check(name, getattr(config, name))
