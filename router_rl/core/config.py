"""The one config idiom: strict, frozen pydantic models validated on construction.

Every configuration object of router_rl (environment specs, policy hyper-parameters, the
evaluation settings, ...) subclasses :class:`StrictConfig`:

* unknown fields are refused (``extra="forbid"``), values are immutable (``frozen``);
* types are strict: ``num_threads=True`` or ``feature_fraction="0.5"`` are refused, not coerced
  (ints are accepted for floats);
* every failure is a :class:`~router_rl.core.errors.ConfigError` whose setting is
  ``ClassName.field.path`` (pydantic's ``ValidationError`` never reaches the user);
* :meth:`StrictConfig.from_dict` reads a saved config (JSON lists for tuples accepted);
  :meth:`StrictConfig.to_dict` writes one; :meth:`StrictConfig.replace` validates the changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from router_rl.core.errors import ConfigError


def config_error(e: ValidationError, owner: str, *, source: str | None = None) -> ConfigError:
    """Map a pydantic ``ValidationError`` to a :class:`ConfigError` naming the first bad field.

    Args:
        e: The validation error.
        owner: Prefix of the setting name (a class name, or ``""`` for a bare field path).
        source: File the values came from, if any.
    """
    errors = e.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = str(first["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    cross = re.match(r"^([A-Za-z_][\w.]*): (.*)$", msg, flags=re.S)
    if not loc and cross:  # a cross-field check names its field: ``ValueError("field: problem")``
        loc, msg = cross.group(1), cross.group(2)
    setting = ".".join(p for p in (owner, loc) if p) or owner or "<config>"
    if first["type"] == "extra_forbidden":
        msg = "unknown setting (extra inputs are not permitted)"
    if "input" in first and first["type"] not in ("extra_forbidden", "missing") and "got" not in msg:
        msg = f"{msg}, got {first['input']!r}"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(setting, f"{msg}{more}", source=source)


class StrictConfig(BaseModel):
    """Base of every router_rl config (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise config_error(e, type(self).__name__) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> Self:
        """Validate a plain (e.g. JSON-loaded) mapping; unknown keys raise :class:`ConfigError`.

        A JSON-serialisable mapping is validated with JSON semantics (a list is accepted for a
        tuple field); one holding other Python values goes through the constructor. Either way
        as strict as the constructor.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(cls.__name__, f"expected a mapping, got {type(data).__name__}", source=source)
        try:
            text = json.dumps(dict(data))
        except (TypeError, ValueError):  # Python values JSON cannot carry: validate them as given
            return cls(**dict(data))
        try:
            return cls.model_validate_json(text)
        except ValidationError as e:
            raise config_error(e, cls.__name__, source=source) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (round-trips through :meth:`from_dict`)."""
        return self.model_dump(mode="json")

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, validated like the constructor."""
        return type(self)(**{**dict(self), **changes})


#: An integer >= 1.
PositiveInt = Annotated[int, Field(ge=1)]
#: An integer >= 0.
NonNegativeInt = Annotated[int, Field(ge=0)]
#: A finite number >= 0.
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: A finite number > 0.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: A number in [0, 1].
UnitFloat = Annotated[float, Field(ge=0, le=1)]
#: A fraction in (0, 1].
Fraction = Annotated[float, Field(gt=0, le=1)]


def as_tuple(v: Any) -> Any:
    """Lists and numpy arrays given for a tuple field become tuples (the only coercion)."""
    if isinstance(v, list):
        return tuple(v)
    if type(v).__module__ == "numpy" and hasattr(v, "tolist"):
        out = v.tolist()
        return tuple(out) if isinstance(out, list) else v
    return v


#: A tuple of floats (a list or 1-D array is accepted and stored as a tuple).
FloatTuple = Annotated[tuple[float, ...], BeforeValidator(as_tuple)]
#: A tuple of integers >= 1 (a list is accepted and stored as a tuple).
PositiveIntTuple = Annotated[tuple[PositiveInt, ...], BeforeValidator(as_tuple)]
#: A tuple of strings (a list is accepted and stored as a tuple).
StrTuple = Annotated[tuple[str, ...], BeforeValidator(as_tuple)]
