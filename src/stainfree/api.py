"""The workflows of stainfree as short Python functions; the CLI only wraps these.

This module is the public facade: it re-exports the workflows of :mod:`stainfree.workflows` and holds nothing
else. Each function wires the lower layers together and returns paths or tables. Heavy libraries are imported
inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from stainfree.workflows.arrays import compartment_colors, predict_array, segment_array
from stainfree.workflows.compose import compose
from stainfree.workflows.demo import demo
from stainfree.workflows.execute import input_layout, predict_job, quantify_job, segment_job
from stainfree.workflows.export import export_model, test_package
from stainfree.workflows.finetune import fine_tune
from stainfree.workflows.groundtruth import make_masks, train_fgnet
from stainfree.workflows.inspect import info, simulate
from stainfree.workflows.organelles import catalog_training_job, segment, train_catalog
from stainfree.workflows.quantify import quantify
from stainfree.workflows.register import register, simulate_clem
from stainfree.workflows.staining import (
    evaluate,
    make_manifest,
    predict,
    pretrain,
    train,
    write_default_training_job,
)
from stainfree.workflows.timelapse import timelapse

__all__ = [
    "catalog_training_job",
    "compartment_colors",
    "compose",
    "demo",
    "evaluate",
    "export_model",
    "fine_tune",
    "info",
    "input_layout",
    "make_manifest",
    "make_masks",
    "predict",
    "predict_array",
    "predict_job",
    "pretrain",
    "quantify",
    "quantify_job",
    "register",
    "segment",
    "segment_array",
    "segment_job",
    "simulate",
    "test_package",
    "simulate_clem",
    "timelapse",
    "train",
    "train_catalog",
    "train_fgnet",
    "write_default_training_job",
]
