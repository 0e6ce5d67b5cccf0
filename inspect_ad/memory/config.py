"""One memory config for every model: :class:`MemoryConfig`, embedded as ``memory`` in each
model config with that model's paper defaults.

Options keep their flat names of the configs before it (``-o memory_slots=50``,
``-o slot_init_std=null``), which :func:`fold_memory_options` maps into ``memory``; the dotted
form (``memory.similarity=dot``) and a whole or partial ``memory`` (a saved bundle's dict) work too.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields, replace
from typing import Any, ClassVar

from inspect_ad.errors import ConfigError
from inspect_ad.checks import Int, Number, Optional, Options, validate
from inspect_ad.memory.memae import SIMILARITIES

# {field: constraint}: MemoryConfig's table, which bundle loading checks saved memories against too
FIELD_RULES = {
    "slots": Int(1),
    # λ >= 1 zeroes every softmax weight, so the read-out is 0 and the memory gets no gradient
    "shrink_threshold": Optional(Number(0, 1, open_high=True)),
    "similarity": Options(*SIMILARITIES),
    "logit_scale": Number(0, open_low=True),
    "init_std": Optional(Number(0, open_low=True)),
    "top_k": Optional(Int(1)),   # 1 would leave the addressing no gradient, but is a valid read
}


@dataclass
class MemoryConfig:
    """The settings a memory module is built from (MemAE, Gong et al. ICCV 2019; MNAD, Park et al.
    CVPR 2020; the prototype memory, Lai et al. 2021).

    Not every memory reads every field: MNAD's and the prototype memory take ``slots`` only
    (their read is a fixed cosine softmax, their items are L2-normalised Gaussians), and the
    model configs that embed them refuse the others (:meth:`check_used`).

    Parameters
    ----------
    slots : int
        The number of memory slots (items), N.
    shrink_threshold : float or None, default None
        MemAE's hard-shrinkage threshold λ on the addressing weights; None: 1/N; 0: no shrinkage.
    similarity : {"cosine", "dot"}, default "cosine"
        How a query is compared with each slot: MemAE's cosine, or the dot product of its code.
    logit_scale : float, default 1.0
        A temperature on the similarities inside the addressing softmax (1: the paper's).
    init_std : float or None, default None
        The slots' initial values: N(0, init_std²); None: uniform in ±1/sqrt(C), as MemAE's code.
    top_k : int or None, default None
        Each read keeps its k largest weights (not in MemAE; see ``keep_top_k``); None: all.
    """

    slots: int                              # MemAE eq. 3: N rows of M (MNAD §3.1 M items, Lai et al. eq. 8 N)
    shrink_threshold: float | None = None   # MemAE eq. 7: λ; None = 1/N (see MemAEMemory); 0 = no shrinkage
    similarity: str = "cosine"              # MemAE eq. 5: d(z, m_i) cosine; "dot" = the authors' code
    logit_scale: float = 1.0                # multiplies eq. 5 inside eq. 4's softmax (1 = the paper)
    init_std: float | None = None           # slot init, paper silent: None = the authors' ±1/sqrt(C); else N(0, std²)
    top_k: int | None = None                # not in MemAE: k slots per read after eq. 7; None = all (the paper)

    _constraints: ClassVar[dict] = FIELD_RULES

    def __post_init__(self):
        validate(self)

    def updated(self, **changes: Any) -> "MemoryConfig":
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise ConfigError(f"the memory has no option {', '.join(unknown)}; valid options: {', '.join(FIELDS)}")
        return replace(self, **changes)

    def check_used(self, used: tuple[str, ...], owner: str) -> None:
        """Refuse a field that ``owner``'s memory does not read, unless it keeps its default."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in used and f.default is not MISSING and value != f.default:
                raise ConfigError(f"{f.name}={value!r}: {owner}'s memory does not use it; it takes only: "
                                  f"{', '.join(option_names(used))}")


FIELDS = tuple(FIELD_RULES)
# the options' names in the model configs before MemoryConfig -> its fields
FLAT_NAMES = {"memory_slots": "slots", "shrink_threshold": "shrink_threshold", "similarity": "similarity",
              "logit_scale": "logit_scale", "slot_init_std": "init_std",
              "memory_top_k": "top_k"}
DOTTED = "memory."


def check_field(field: str, value: Any, shown: str | None = None) -> None:
    """The check of MemoryConfig ``field``; the error names the option as the user wrote it (``shown``)."""
    FIELD_RULES[field].check(shown or field, value)


def option_names(used: tuple[str, ...] = FIELDS) -> list[str]:
    """The flat option names of the memory fields in ``used``."""
    return [flat for flat, field in FLAT_NAMES.items() if field in used]


def memory_field(key: str) -> str | None:
    """The MemoryConfig field that option ``key`` sets (flat or dotted), None for other options."""
    if key in FLAT_NAMES:
        return FLAT_NAMES[key]
    return key[len(DOTTED):] if key.startswith(DOTTED) else None


def as_memory_config(value: Any, used: tuple[str, ...] = FIELDS, owner: str = "this model") -> MemoryConfig:
    """A MemoryConfig from itself or its dict (a config read back from JSON), holding only
    fields that ``owner``'s memory reads (``used``) or their defaults."""
    if isinstance(value, MemoryConfig):
        memory = value
    elif isinstance(value, dict) and "slots" in value:
        memory = MemoryConfig(value["slots"]).updated(**value)
    else:
        raise ConfigError(f"memory={value!r}: must be a MemoryConfig or an object with slots and any of: "
                          f"{', '.join(FIELDS[1:])}")
    memory.check_used(used, owner)
    return memory


def fold_memory_options(options: dict, default: MemoryConfig) -> dict:
    """``options`` with every memory option folded, in order (a later one wins), into one
    ``memory`` built on the model's ``default``."""
    rest, memory = {}, default
    for key, value in options.items():
        if key == "memory":
            memory = value if isinstance(value, MemoryConfig) else memory.updated(**_as_changes(value))
        elif (field := memory_field(key)) is not None:
            if field in FIELD_RULES:
                check_field(field, value, key)
            memory = memory.updated(**{field: value})
        else:
            rest[key] = value
    return {**rest, "memory": memory}


def _as_changes(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"memory={value!r}: must be a MemoryConfig or an object of its options ({', '.join(FIELDS)})")
    return value


def default_memory(config_class: type) -> MemoryConfig:
    """The paper memory a model config class embeds by default."""
    return next(f.default_factory() for f in fields(config_class) if f.name == "memory")


def build_with_memory(config_class: type, **options: Any):
    """``config_class(**options)`` where ``options`` may set the memory in any of its spellings."""
    return config_class(**fold_memory_options(options, default_memory(config_class)))
