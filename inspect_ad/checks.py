"""The value checks every config runs in ``__post_init__``: each raises the one-line
:class:`~inspect_ad.errors.ConfigError` naming the option, its value and what it must be."""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Iterable

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


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def check_int(name: str, value: Any, low: int = 1) -> None:
    require(is_int(value) and value >= low, name, value, f"an integer >= {low}")


def check_ints(name: str, values: Any, low: int = 1, allow_empty: bool = False) -> None:
    """A sequence of integers >= ``low`` (layer widths, stages)."""
    ok = isinstance(values, (tuple, list)) and (allow_empty or len(values) > 0)
    require(ok and all(is_int(v) and v >= low for v in values), name, values,
            f"a {'' if allow_empty else 'non-empty '}list of integers >= {low}")


def check_number(name: str, value: Any, low: float = 0.0, high: float = math.inf, *,
                 open_low: bool = False, open_high: bool = False) -> None:
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high or high == math.inf else ']'}"
    require(is_number(value) and above and below, name, value, f"a finite number in {interval}")


def check_power_of_two(name: str, value: Any) -> None:
    require(is_int(value) and value >= 1 and not value & (value - 1), name, value, "a power of 2 (1, 2, 4, 8, 16, ...)")


def check_odd(name: str, value: Any) -> None:
    require(is_int(value) and value >= 1 and value % 2 == 1, name, value, "an odd integer >= 1 (1, 3, 5, ...)")


def check_multiple(name: str, value: Any, base: int, why: str) -> None:
    require(is_int(value) and value >= base and value % base == 0, name, value, f"a multiple of {base} ({why})")


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


def check_size(name: str, value: Any, multiple: int = 1, why: str = "", error: type[Exception] = ConfigError) -> None:
    """An input size: one side, or a (height, width) pair, each in [8, MAX_SIZE] and a multiple
    of ``multiple``."""
    sides = list(value) if isinstance(value, (list, tuple)) else [value]
    if not (len(sides) in (1, 2) and all(is_int(v) and 8 <= v <= MAX_SIZE and v % multiple == 0 for v in sides)):
        extra = f", multiples of {multiple}{f' ({why})' if why else ''}" if multiple > 1 else ""
        raise error(f"{name}={value!r}: must be one side or a (height, width) pair of integers in "
                    f"[8, {MAX_SIZE}]{extra}")
