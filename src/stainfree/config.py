"""Configuration: pydantic v2 models (``extra="forbid"``) with YAML load and save.

Every top-level configuration carries a ``version`` so that files written by an older stainfree can be recognised.
Sections below are grouped by the part of the pipeline that owns them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from stainfree.errors import ConfigError
from stainfree.io.atomic import write_text

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


def save_yaml(config: BaseModel, path: str | Path) -> Path:
    """Save a configuration as YAML (atomically) and return the path."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return write_text(path, text)


# ---------------------------------------------------------------------------------------------------------------
# Simulation (owner: stainfree.simulate)
# ---------------------------------------------------------------------------------------------------------------

# <simulation-configs>

# ---------------------------------------------------------------------------------------------------------------
# Data, model, training, prediction (owner: virtual staining machinery, shared by segmentation)
# ---------------------------------------------------------------------------------------------------------------

# <ml-configs>  (training helper: data, model, training, bundle configs)

# <inference-configs>  (inference helper: prediction and evaluation configs)

# ---------------------------------------------------------------------------------------------------------------
# Segmentation: ratiometric preprocessing, organelle catalog (owner: segmentation)
# ---------------------------------------------------------------------------------------------------------------

# <segmentation-configs>

# ---------------------------------------------------------------------------------------------------------------
# Quantification (owner: stainfree.quantify)
# ---------------------------------------------------------------------------------------------------------------

# <quantify-configs>
