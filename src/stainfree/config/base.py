"""The base of every configuration: strict pydantic models, a format version, YAML load, validate and save."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from stainfree.atomic import write_text
from stainfree.errors import ConfigError

CONFIG_VERSION = 1

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every configuration model: unknown keys are an error, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def load_yaml(cls: type[M], path: str | Path) -> M:
    """Load a configuration of type ``cls`` from a YAML file, with a clear error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return validate(cls, data, source=str(path))


def validate(cls: type[M], data: dict[str, Any], source: str = "configuration") -> M:
    """Validate ``data`` into ``cls``, turning pydantic's report into one readable ConfigError."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def resolve(
    cls: type[M], config: M | str | Path | None = None, source: str = "options", **overrides: Any
) -> M:
    """A configuration from an instance, a YAML path or None (the defaults), with ``overrides`` validated in.

    ``source`` names the overrides in an error message (e.g. ``"simulate options"``).
    """
    if config is None:
        cfg = cls()
    elif isinstance(config, str | Path):
        cfg = load_yaml(cls, config)
    else:
        cfg = config
    if overrides:
        cfg = validate(cls, {**cfg.model_dump(), **overrides}, source=source)
    return cfg


def save_yaml(config: BaseModel, path: str | Path) -> Path:
    """Save a configuration as YAML (atomically) and return the path."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return write_text(path, text)
