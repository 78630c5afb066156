"""Configuration: pydantic v2 models (``extra="forbid"``) with YAML load and save.

Every top-level configuration carries a ``version`` so that files written by an older stainfree can be
recognised. Import every model from here (``from stainfree.config import DataConfig``); the modules hold:

* :mod:`~stainfree.config.base` -- :class:`StrictModel`, :data:`CONFIG_VERSION`, YAML load, validate, save;
* :mod:`~stainfree.config.simulation` -- the digital cell;
* :mod:`~stainfree.config.learning` -- data, augmentation, model, training, bundle, prediction, evaluation;
* :mod:`~stainfree.config.catalog` -- the organelle catalog;
* :mod:`~stainfree.config.quantify` -- organelle quantification;
* :mod:`~stainfree.config.demo` -- the end-to-end demo.
"""

from stainfree.config.base import CONFIG_VERSION, StrictModel, load_yaml, resolve, save_yaml, validate
from stainfree.config.catalog import CatalogClass, CatalogNetwork, OrganelleCatalog
from stainfree.config.demo import DemoConfig
from stainfree.config.learning import (
    AugmentConfig,
    BundleConfig,
    ChannelRef,
    ChannelStats,
    DataConfig,
    EvaluateConfig,
    ModelConfig,
    PredictConfig,
    TrainConfig,
    TrainingJob,
)
from stainfree.config.quantify import QuantifyConfig
from stainfree.config.simulation import SIMULATION_TARGETS, SimulationConfig

__all__ = [
    "CONFIG_VERSION",
    "SIMULATION_TARGETS",
    "AugmentConfig",
    "BundleConfig",
    "CatalogClass",
    "CatalogNetwork",
    "ChannelRef",
    "ChannelStats",
    "DataConfig",
    "DemoConfig",
    "EvaluateConfig",
    "ModelConfig",
    "OrganelleCatalog",
    "PredictConfig",
    "QuantifyConfig",
    "SimulationConfig",
    "StrictModel",
    "TrainConfig",
    "TrainingJob",
    "load_yaml",
    "resolve",
    "save_yaml",
    "validate",
]
