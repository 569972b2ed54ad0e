"""The run configuration: one YAML file, validated when it is loaded.

A config has four parts — ``data``, ``model``, ``train`` and the top-level
``name``/``seed`` — and every key can be overridden with ``--set a.b=value``
(the value is parsed as YAML). The ``model`` part is validated by the model
family its ``type`` names, so each family owns its keys (see ``aelab.models``).
Validation errors name the key, its value and the closest valid key.

One module (~370 lines) on purpose: the schema and its loading are one thing. Every way in
(a file, a mapping, ``--set``) ends in the same validation, whose messages walk the schema as it
is defined here (the valid keys, the closest one, the section a misplaced key belongs to).
"""

from __future__ import annotations

import copy
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from aelab.errors import ConfigError, closest_name

RUN_NAME = re.compile(r"[A-Za-z0-9._+-]+")
"""What a config's ``name`` may be: one path component (sweeps slug to the same set: ``1e+06`` keeps its +)."""

SEED_LIMIT = 2**32  # seeds are 0 <= seed < 2**32: what every RNG aelab seeds (numpy, torch, CUDA) accepts


def _takes(annotation: Any, kinds: tuple[type, ...]) -> bool:
    """Whether a field annotation mentions one of ``kinds`` (through Optional, list, tuple, Annotated)."""
    if annotation is Any:
        return bool in kinds
    if annotation in kinds:
        return True
    if typing.get_origin(annotation) is Literal:
        return False
    return any(_takes(a, kinds) for a in typing.get_args(annotation))


def _holds_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, list | tuple) and any(_holds_bool(v) for v in value))


class NumbersNotBools(BaseModel):
    """Numeric keys refuse true/false: pydantic would read ``lr: true`` as 1.0 and ``epochs: true`` as 1,
    so a slip in a YAML file or a ``--set`` would train silently with a number nobody chose."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name].annotation if info.field_name else None
        if _holds_bool(value) and _takes(annotation, (int, float)) and not _takes(annotation, (bool,)):
            raise ValueError("must be a number, not true/false")
        return value


class Strict(NumbersNotBools):
    """Base for config sections: unknown keys are errors; so are NaN and infinity."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


class NoiseConfig(Strict):
    """Input corruption for denoising training: the model sees the corrupted
    image and is asked to reconstruct the clean one."""

    type: Literal["gaussian", "mask"] = "gaussian"
    std: float = Field(0.1, ge=0, description="gaussian: std in model range units")
    fraction: float = Field(0.25, ge=0, lt=1, description="mask: share of pixels set to zero")


class DataConfig(Strict):
    source: str = "builtin:faces?n=5000"
    labels: str | None = None
    select_labels: list[int] | None = None
    val_fraction: float = Field(0.1, ge=0, lt=1)
    preprocess: list[str | dict[str, Any]] = Field(default_factory=list)
    range: tuple[float, float] = (-1.0, 1.0)
    limit: int | None = Field(None, ge=1, description="train on this many images (after select_labels; the "
                              "validation split is taken from them)")
    limit_mode: Literal["first", "random"] = "first"
    split_seed: int | None = Field(None, ge=0, lt=SEED_LIMIT, description="seed of the validation split and "
                                   "the random limit draw; default: the run's seed (so an ensemble of seeds can "
                                   "share one split)")

    @field_validator("range")
    @classmethod
    def _known_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if tuple(value) not in {(-1.0, 1.0), (0.0, 1.0)}:
            raise ValueError(f"must be [-1, 1] or [0, 1], got {list(value)}")
        return value


Metric = Literal["val_mse", "val_psnr", "val_ssim", "train_loss"]
"""An epoch record's metric that schedules, early stopping and keep_best can watch."""


def higher_is_better(metric: str) -> bool:
    """PSNR and SSIM grow as reconstructions improve; losses and MSE shrink."""
    return metric in {"val_psnr", "val_ssim"}


class LRScheduleConfig(Strict):
    """The learning rate over a run: ``warmup_steps`` linear steps from lr/warmup_steps up to ``lr``, then
    ``constant``; ``cosine`` down to ``min_lr`` at the run's last step; ``step``: times ``gamma`` every
    ``step_size`` epochs; ``plateau``: times ``factor`` (not below ``min_lr``) after ``patience`` epochs
    in which ``metric`` did not beat its best by more than ``min_delta``."""

    type: Literal["constant", "cosine", "step", "plateau"] = "constant"
    warmup_steps: int = Field(0, ge=0, description="optimiser steps of linear warmup")
    min_lr: float = Field(0.0, ge=0, description="cosine: the last step's lr; plateau: the lowest lr")
    step_size: int = Field(1, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="step: the decay factor")
    metric: Metric = "val_mse"
    patience: int = Field(2, ge=0, description="plateau: epochs without improvement before a cut")
    factor: float = Field(0.1, gt=0, lt=1, description="plateau: the cut")
    min_delta: float = Field(0.0, ge=0, description="plateau: how much better than the best an epoch must be")


class EarlyStoppingConfig(Strict):
    """Stop after ``patience`` epochs in which ``metric`` did not beat its best by more than ``min_delta``."""

    metric: Metric = "val_mse"
    patience: int = Field(3, ge=1)
    min_delta: float = Field(0.0, ge=0)


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    loss: Literal["mse", "l1", "bce"] = "mse"
    input_noise: NoiseConfig | None = None
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    eval_batch_size: int = Field(512, ge=1)
    compile: bool = False
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    lr_schedule: LRScheduleConfig = Field(default_factory=LRScheduleConfig)
    early_stopping: EarlyStoppingConfig | None = None
    keep_best: Metric | None = None
    grad_clip: float | None = Field(None, gt=0, description="clip the gradients' global L2 norm to this")
    log: list[Literal["csv", "tensorboard"]] = Field(default_factory=list)

    @field_validator("lr_schedule", mode="before")
    @classmethod
    def _schedule_shorthand(cls, value: Any) -> Any:
        # `lr_schedule: cosine` is short for `lr_schedule: {type: cosine}`.
        return {"type": value} if isinstance(value, str) else value

    @field_validator("input_noise", mode="before")
    @classmethod
    def _noise_shorthand(cls, value: Any) -> Any:
        # `input_noise: 0.2` is short for gaussian noise of std 0.2.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return None if value == 0 else {"type": "gaussian", "std": value}
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in {"auto", "cpu", "mps"} and not value.startswith("cuda"):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got '{value}'")
        return value


class Config(Strict):
    name: str = "run"
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    data: DataConfig = Field(default_factory=DataConfig)
    model: Any = Field(default_factory=lambda: {"type": "fcn"}, validate_default=True)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, value: str) -> str:
        # The name becomes a folder (runs/<name>, a sweep's or one-class study's sub-folder) that --force may
        # replace: it must not climb out (`../x`), reach elsewhere (`/x`, `a/b`) or be the folder itself (`.`).
        if not RUN_NAME.fullmatch(value) or value in {".", ".."}:
            raise ValueError("must be one folder name: letters, digits and - _ . + only (not '.' or '..', "
                             "no / or \\)")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _model_family(cls, value: Any) -> Any:
        from aelab.models.registry import parse_params

        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, dict):
            raise ValueError("must be a mapping with a 'type' key")
        return parse_params(value)

    @model_validator(mode="after")
    def _output_matches_range(self) -> Config:
        wanted = "tanh" if tuple(self.data.range) == (-1.0, 1.0) else "sigmoid"
        act = getattr(self.model, "output_activation", "auto")
        if act == "auto":
            self.model.output_activation = wanted
        elif act in {"tanh", "sigmoid"} and act != wanted:
            raise ValueError(
                f"model.output_activation '{act}' does not match data.range {list(self.data.range)}"
                f" (use '{wanted}', or 'auto')"
            )
        t = self.train
        watched = [(f"train.{what}", m) for what, m in (
            ("lr_schedule.metric", t.lr_schedule.metric if t.lr_schedule.type == "plateau" else None),
            ("early_stopping.metric", t.early_stopping.metric if t.early_stopping else None),
            ("keep_best", t.keep_best)) if m and m.startswith("val_")]
        if watched and self.data.val_fraction == 0:
            key, metric = watched[0]
            raise ValueError(f"{key} '{metric}' needs a validation split (data.val_fraction is 0); use train_loss "
                             f"or set data.val_fraction")
        if self.train.loss == "bce" and tuple(self.data.range) != (0.0, 1.0):
            raise ValueError("train.loss 'bce' needs data.range [0, 1] (binary cross-entropy is defined on [0, 1])")
        return self

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"model"})
        out["model"] = self.model.model_dump(mode="json")
        return {"name": out.pop("name"), "seed": out.pop("seed"), **out}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _format_error(err: ValidationError, raw: dict[str, Any], source: str) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if not str(p).startswith(("function-", "str", "dict"))]
    key = ".".join(loc)
    where = f"{source}: " if source else ""
    if first["type"] == "extra_forbidden":
        schema = Config.model_json_schema()
        # a key put in the wrong section (`train.limit`) names the section it belongs to; otherwise the
        # closest key of its own section, then of any section
        elsewhere = {k.rsplit(".", 1)[-1]: k for k in _all_keys(schema) if k != key}
        name = elsewhere.get(loc[-1]) or closest_name(loc[-1], _lookup(schema, loc[:-1]))
        name = name or elsewhere.get(closest_name(loc[-1], elsewhere) or "")
        hint = f" (did you mean '{name}'?)" if name else ""
        return f"{where}unknown config key '{key}'{hint}"
    msg = first["msg"].removeprefix("Value error, ")
    if "input" in first and first["type"] not in {"missing"} and not isinstance(first["input"], dict):
        return f"{where}config key '{key}' = {first['input']!r}: {msg}"
    return f"{where}config key '{key}': {msg}" if key else f"{where}{msg}"


def _lookup(schema: dict[str, Any], path: list[str]) -> list[str]:
    """Valid key names at ``path`` in the Config JSON schema (for suggestions)."""
    node = schema
    for part in path:
        props = node.get("properties", {})
        if part not in props:
            return []
        node = props[part]
        ref = node.get("$ref") or next(
            (a.get("$ref") for a in node.get("anyOf", []) if "$ref" in a), None
        )
        if ref:
            node = schema["$defs"][ref.split("/")[-1]]
    return list(node.get("properties", {}))


def _all_keys(schema: dict[str, Any]) -> list[str]:
    """Every dotted key of the Config schema (sections and their keys, sub-sections walked)."""
    found: list[str] = []

    def walk(path: list[str]) -> None:
        for name in _lookup(schema, path):
            found.append(".".join([*path, name]))
            walk([*path, name])

    walk([])
    return found


def parse_override(item: str) -> tuple[list[str], Any]:
    """'train.lr=3e-4' -> (['train', 'lr'], 0.0003); the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set '{item}': expected key=value, e.g. train.epochs=5")
    key, value = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set '{item}': empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        why = getattr(exc, "problem", None) or getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(f"--set '{item}': value is not valid YAML ({why})") from None
    return path, parsed


def set_key(raw: dict[str, Any], key: str | list[str], value: Any, where: str = "") -> None:
    """Set ``a.b.c`` in a nested dict, creating sections on the way; ``where`` names the source in errors."""
    path = [p for p in key.split(".") if p] if isinstance(key, str) else key
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where or '.'.join(path)}: '{part}' is not a section")
        node = child
    node[path[-1]] = copy.deepcopy(value)


def preset(name: str) -> Path:
    """Path of a config shipped in the package (``configs/`` in the repository), by name or file name."""
    from importlib.resources import files

    return Path(str(files("aelab") / "configs" / (name if name.endswith(".yaml") else f"{name}.yaml")))


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        path, value = parse_override(item)
        set_key(raw, path, value, where=f"--set '{item}'")
    return raw


def config_from_dict(raw: dict[str, Any], overrides: list[str] | None = None, source: str = "") -> Config:
    """Validate a plain dict (as read from YAML) into a Config."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source or 'config'}: expected a mapping at the top level")
    raw = apply_overrides(raw, overrides)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, raw, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read and validate a YAML config file (``--set`` style overrides applied first).

    A bare name that is not a file here (``deep-fcn``, ``conv-vae.yaml``) is a shipped preset."""
    path = Path(path)
    if not path.exists() and len(path.parts) == 1 and preset(path.name).is_file():
        path = preset(path.name)
    if path.is_dir():
        path = path / "config.yaml"  # = runfolder.CONFIG (the core layer does not import the run layer)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                          f"save it as UTF-8") from None
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    return config_from_dict(raw, overrides, source=str(path))


def as_config(config: Config | dict[str, Any] | str | Path, overrides: list[str] | None = None) -> Config:
    """Accept a Config, a dict or a path — what the Python API takes everywhere."""
    if isinstance(config, Config):
        return config_from_dict(config.to_dict(), overrides) if overrides else config
    if isinstance(config, dict):
        return config_from_dict(config, overrides)
    return load_config(config, overrides)
