"""Model families by name: ``create_model("fcn", input_shape, latent_dim=10)``.

Each family registers its class and its parameter schema; the config's
``model.type`` picks the family and the family validates its own keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from aelab.errors import ConfigError, closest


@dataclass(frozen=True)
class Family:
    name: str
    cls: type
    params: type[BaseModel]
    parse: Callable[[dict[str, Any]], BaseModel] | None = None


_FAMILIES: dict[str, Family] = {}


def register(name: str, params: type[BaseModel], parse: Callable[[dict[str, Any]], BaseModel] | None = None):
    """Class decorator: make a model family available as ``model.type: name``."""

    def wrap(cls: type) -> type:
        cls.family = name
        _FAMILIES[name] = Family(name, cls, params, parse)
        return cls

    return wrap


def families() -> dict[str, Family]:
    """Every registered family. The built-in ones register when ``aelab.models`` is imported (which
    importing this module does first), so the registry never imports the families it holds."""
    return dict(_FAMILIES)


def _family(name: Any) -> Family:
    fams = families()
    if not isinstance(name, str) or name not in fams:
        raise ConfigError(f"unknown model.type '{name}'{closest(str(name), fams)}; families: {', '.join(fams)}")
    return fams[name]


def family_label(params: BaseModel | type[BaseModel]) -> str:
    """How errors name a family: ``conv``, or ``vae (backbone conv)``."""
    fields = params.model_fields
    name = fields["type"].default
    if "backbone" in fields:
        return f"{name} (backbone {fields['backbone'].default})"
    return str(name)


def _owners(key: str, family: str) -> list[str]:
    """The other families that have ``key``."""
    out = []
    for fam in families().values():
        for cls in getattr(fam.cls, "param_classes", (fam.params,)):
            label = family_label(cls)
            if label != family and key in cls.model_fields and label not in out:
                out.append(label)
    return out


def validate(params_cls: type[BaseModel], raw: dict[str, Any], prefix: str = "model") -> BaseModel:
    """Validate ``raw`` against a family schema, turning errors into one named line: a key the family
    does not have, or one its other choices leave unused (``ignored_keys``), is an error naming the family."""
    family = family_label(params_cls)
    try:
        params = params_cls.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join([prefix, *(str(p) for p in first["loc"])])
        if first["type"] == "extra_forbidden":
            name = str(first["loc"][-1])
            keys = [k for k in params_cls.model_fields if k != "type"]
            owners = _owners(name, family) if len(first["loc"]) == 1 else []
            if owners:
                raise ConfigError(f"config key '{key}' is not used by model family '{family}' (it is a key of "
                                  f"{', '.join(owners)}); {family} takes: {', '.join(keys)}") from None
            raise ConfigError(f"unknown config key '{key}'{closest(name, params_cls.model_fields)} for model "
                              f"family '{family}'") from None
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"config key '{key}' = {first.get('input')!r}: {msg}") from None
    ignored = getattr(params, "ignored_keys", dict)()
    for name, why in ignored.items():
        raise ConfigError(f"config key '{prefix}.{name}' = {getattr(params, name)!r} is ignored by model family "
                          f"'{family}': {why}; remove it")
    return params


def parse_params(raw: dict[str, Any]) -> BaseModel:
    """The validated parameters of the family that ``raw['type']`` names."""
    raw = dict(raw)
    raw.setdefault("type", "fcn")
    fam = _family(raw["type"])
    return fam.parse(raw) if fam.parse else validate(fam.params, raw)


def min_input_side(params: BaseModel) -> int:
    """The smallest image side the family of ``params`` can take (1 unless it down-samples)."""
    fn = getattr(_family(params.type).cls, "min_side", None)
    return int(fn(params)) if fn else 1


def create_model(params: BaseModel | dict[str, Any] | str, input_shape: tuple[int, int, int], **kwargs: Any):
    """Build a model for inputs of ``input_shape`` (C, H, W).

    ``params`` is a validated params object, a dict with ``type``, or a
    family name with its keys given as keyword arguments."""
    if isinstance(params, str):
        params = {"type": params, **kwargs}
    if isinstance(params, dict):
        params = parse_params(params)
    return _family(params.type).cls(params, tuple(input_shape))
