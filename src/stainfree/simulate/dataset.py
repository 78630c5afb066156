"""Write a simulated data set: one folder per field, ``manifest.csv`` and ``simulation.json``.

Layout (``.ome.zarr`` instead of ``.ome.tif`` with ``output_format="ome-zarr"``)::

    out_dir/
      manifest.csv        field, brightfield, fluorescence, fluorescence_clean, nilered, labels,
                          instances, cells, json, split (paths relative to the manifest)
      simulation.json     the configuration, microscope profile, label priority, Nile Red classes
      field_000/
        brightfield.ome.tif   (T)ZYX uint16      fluorescence.ome.tif   (T)CZYX uint16 (targets)
        fluorescence_clean.ome.tif (T)CZYX float32   nilered.ome.tif   (T)CZYX uint16 (yellow, red[, gfp])
        labels.ome.tif        (T)ZYX uint8       instances.ome.tif      (T)CZYX uint32 (15 compartments)
        cells.ome.tif         ZYX uint16         field.json
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from stainfree.config import SimulationConfig
from stainfree.errors import InputError
from stainfree.io.writers import write_json, write_ome_tiff, write_ome_zarr, write_table
from stainfree.simulate.events import EVENT_COLUMNS, dump_config
from stainfree.simulate.field import SimulatedField, resolve_microscope, simulate_field
from stainfree.simulate.geometry import PRIORITY
from stainfree.simulate.spectra import nilered_table
from stainfree.types import COMPARTMENTS

IMAGES: tuple[str, ...] = (
    "brightfield",
    "fluorescence",
    "fluorescence_clean",
    "nilered",
    "labels",
    "instances",
    "cells",
)


def _channel_names(sim: SimulatedField, name: str) -> list[str] | None:
    if name in ("fluorescence", "fluorescence_clean"):
        return list(sim.target_names)
    if name == "nilered":
        return list(sim.nilered_names)
    if name == "instances":
        return list(COMPARTMENTS)
    return None


def write_field(
    sim: SimulatedField, folder: str | os.PathLike, output_format: str = "ome-tiff"
) -> dict[str, str]:
    """Write the images and ``field.json`` of one field into ``folder``; returns name -> file name."""
    folder = Path(folder)
    suffix = ".ome.tif" if output_format == "ome-tiff" else ".ome.zarr"
    files: dict[str, str] = {}
    for name in IMAGES:
        array = getattr(sim, name)
        path = folder / f"{name}{suffix}"
        axes = sim.axes(name)
        if output_format == "ome-tiff":
            write_ome_tiff(path, array, axes, sim.voxel_size_um, _channel_names(sim, name))
        else:
            write_ome_zarr(path, array, axes, sim.voxel_size_um, _channel_names(sim, name))
        files[name] = path.name
    meta = dict(sim.metadata)
    if "events" in meta:  # time-lapse events played (simulate/events.py): truth as a table too
        write_table(folder / "events.csv", pd.DataFrame(meta["events"], columns=list(EVENT_COLUMNS)))
        files["events"] = "events.csv"
    meta["files"] = files
    write_json(folder / "field.json", meta)
    files["json"] = "field.json"
    return files


def splits(n_fields: int, val_fraction: float) -> list[str]:
    """'train' for the first fields, 'val' for the last ``ceil(n * val_fraction)`` (one stays 'train')."""
    n_val = min(int(np.ceil(n_fields * val_fraction - 1e-9)), n_fields - 1)
    return ["train"] * (n_fields - n_val) + ["val"] * n_val


def write_dataset(
    config: SimulationConfig,
    out_dir: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Simulate ``config.n_fields`` fields into ``out_dir`` and return the manifest path.

    Parameters
    ----------
    config : SimulationConfig
    out_dir : destination folder (created; existing field folders of the same names are replaced).
    progress : optional callback ``(done, total)`` called after every field.

    Returns
    -------
    Path
        ``out_dir / "manifest.csv"``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    prof = resolve_microscope(config)
    write_json(
        out / "simulation.json",
        {
            "config": dump_config(config),
            "microscope": {k: (list(v) if isinstance(v, tuple) else v) for k, v in prof.items()},
            "compartments": list(COMPARTMENTS),
            "label_priority": list(PRIORITY),
            "nilered_classes": {k: list(v) for k, v in nilered_table(config.nilered_model).items()},
            "nilered_classes_columns": [
                "brightness_median",
                "brightness_log_sd",
                "ratio_median",
                "ratio_log_sd",
            ],
            "layout": {name: f"field_NNN/{name}" for name in (*IMAGES, "json")},
        },
    )
    rows = []
    split = splits(config.n_fields, config.val_fraction)
    for i in range(config.n_fields):
        name = f"field_{i:03d}"
        sim = simulate_field(config, i)
        files = write_field(sim, out / name, config.output_format)
        rows.append({"field": name, **{k: f"{name}/{v}" for k, v in files.items()}, "split": split[i]})
        del sim
        if progress is not None:
            progress(i + 1, config.n_fields)
    cols = ["field", "brightfield", "fluorescence", "fluorescence_clean", "nilered", "labels", "instances"]
    cols += ["cells", "json", "split"]
    return write_table(out / "manifest.csv", pd.DataFrame(rows, columns=cols))


def n_objects(sim: SimulatedField) -> dict[str, int]:
    """Number of listed objects per compartment in the first frame (a summary for reports)."""
    counts = {c: 0 for c in COMPARTMENTS}
    for ob in sim.metadata["objects"]:
        if ob["t"] == 0:
            counts[ob["class"]] += 1
    return counts


__all__ = ["IMAGES", "n_objects", "splits", "write_dataset", "write_field"]
