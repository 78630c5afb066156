"""Quantification: objects, summaries, contacts and tracks of segmented organelles."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from stainfree.config import QuantifyConfig


def _quantify_aux(
    value: str | Path | np.ndarray | None, name: str, n_frames: int, spatial: tuple[int, ...]
) -> np.ndarray | None:
    """An auxiliary image (array or path) as an array of one frame's shape or (T, ...)."""
    import numpy as np

    from stainfree.quantify.inputs import load_frames_image

    if value is None or isinstance(value, np.ndarray):
        return value
    arr, _ = load_frames_image(value, n_frames, spatial)
    if arr.ndim != len(spatial) + 1:
        from stainfree.errors import InputError

        raise InputError(value, f"{name} must have one channel")
    return arr


def _quantify_nilered(
    value: str | Path | np.ndarray,
    n_frames: int,
    spatial: tuple[int, ...],
    alignment: str | tuple[float, float, float] = "auto",
) -> tuple[np.ndarray, np.ndarray, list[list[float]]]:
    """Intensity (Y+R)/2 and ratio R/Y per frame from a Nile Red image (path or (T,)C,spatial array), red
    moved onto yellow first; and the (z, y, x) shift used per frame."""
    import numpy as np

    from stainfree.data.align import align_for_ratio
    from stainfree.data.ratiometric import intensity_ratio
    from stainfree.errors import InputError
    from stainfree.quantify.inputs import load_frames_image

    if isinstance(value, np.ndarray):
        arr, chans = (value if value.ndim == len(spatial) + 2 else value[None]), ()
    else:
        arr, meta = load_frames_image(value, n_frames, spatial)
        chans = tuple(c.lower() for c in meta.channel_names)
    if arr.ndim != len(spatial) + 2 or arr.shape[1] < 2:
        raise InputError(
            str(value) if not isinstance(value, np.ndarray) else "nilered array",
            "a Nile Red image needs two channels (yellow, red)",
        )
    iy = chans.index("yellow") if "yellow" in chans else 0
    ir = chans.index("red") if "red" in chans else 1
    pairs, shifts = [], []
    for t in range(arr.shape[0]):
        red, shift = align_for_ratio(arr[t, iy], arr[t, ir], alignment)
        pairs.append(intensity_ratio(arr[t, iy], red, offset="auto"))
        shifts.append([round(v, 3) for v in shift])
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), shifts


def quantify(
    masks: str | Path | np.ndarray,
    out_dir: str | Path | None = None,
    *,
    intensity: str | Path | np.ndarray | None = None,
    ratio: str | Path | np.ndarray | None = None,
    nilered: str | Path | np.ndarray | None = None,
    cells: str | Path | np.ndarray | None = None,
    voxel_size_um: tuple[float, float, float] | None = None,
    names: list[str] | None = None,
    axes: str | None = None,
    kind: str | None = None,
    config: QuantifyConfig | str | Path | None = None,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Quantify organelles: objects, per-structure and per-cell summaries, contacts, tracks, contact events.

    Parameters
    ----------
    masks : path or ndarray
        A simulated data set (folder with ``manifest.csv``, or the manifest: every field, tables stacked with
        a ``field`` column), a label map (values 1..15 = :data:`stainfree.types.COMPARTMENTS`, or 1..n =
        ``names``), a stack of named binary masks (``stainfree segment`` output), an instance stack
        (``instances.ome.tif``), a simulator field folder (its instances, cells, Nile Red, voxel size and
        frame interval are used), or an array. A T axis makes a time-lapse.
    out_dir : path, optional
        Where tables (CSV + Parquet), figures (PNG) and ``quantify.json`` go; None writes nothing.
    intensity, ratio : path or ndarray, optional
        Images whose per-object means are reported.
    nilered : path or ndarray, optional
        A Nile Red image (yellow, red channels) giving intensity and ratio
        (:func:`stainfree.data.ratiometric.intensity_ratio`); overrides ``intensity``/``ratio``.
    cells : path or ndarray, optional
        Cell-id map (0 = outside); default: derived from the structures (see ``QuantifyConfig.derive_cells``).
    voxel_size_um : (z, y, x), optional
        Overrides the voxel size of the file; 1 um is assumed (with a warning) where unknown.
    names : list of str, optional
        Names of label values 1..n or of the mask channels.
    axes : str, optional
        Axes of an array input (see :func:`stainfree.quantify.inputs.load_masks`).
    kind : {"labels", "masks", "instances"}, optional
        Force how the masks are read (default: guessed; a single-channel image is a label map, and
        ``kind="instances"`` reads it as one structure's instance map, e.g. nuclei from StarDist).
    config : QuantifyConfig or path to YAML, optional
        Settings.
    progress : bool
        Show a rich progress bar.

    Returns
    -------
    dict of str -> pandas.DataFrame
        ``objects, structures, cells, contacts, contact_matrix, object_contacts, timeseries, links,
        contact_events`` (see :data:`stainfree.quantify.run.TABLES`).
    """

    from contextlib import nullcontext

    from stainfree.config import QuantifyConfig, resolve
    from stainfree.lock import output_lock

    cfg = resolve(QuantifyConfig, config)
    with output_lock(out_dir) if out_dir is not None else nullcontext():
        return _quantify(
            masks, out_dir, cfg, intensity, ratio, nilered, cells, voxel_size_um, names, axes, kind, progress
        )


def _quantify(
    masks: str | Path | np.ndarray,
    out_dir: str | Path | None,
    cfg: QuantifyConfig,
    intensity: str | Path | np.ndarray | None,
    ratio: str | Path | np.ndarray | None,
    nilered: str | Path | np.ndarray | None,
    cells: str | Path | np.ndarray | None,
    voxel_size_um: tuple[float, float, float] | None,
    names: list[str] | None,
    axes: str | None,
    kind: str | None,
    progress: bool,
) -> dict[str, pd.DataFrame]:
    import numpy as np
    import pandas as pd

    from stainfree.io.writers import write_json
    from stainfree.quantify.figures import write_figures, write_tables
    from stainfree.quantify.inputs import dataset_fields

    fields = None if isinstance(masks, np.ndarray) else dataset_fields(masks)
    if fields:  # a simulated data set: every field, tables stacked with a "field" column
        per_field, metas = {}, []
        for name, folder in fields:
            per_field[name], meta = _quantify_one(
                folder, cfg, voxel_size_um=voxel_size_um, names=names, kind=kind, progress=progress
            )
            metas.append({"field": name, **meta})
        tables = {
            key: pd.concat(
                [t[key].assign(field=name)[["field", *t[key].columns]] for name, t in per_field.items()],
                ignore_index=True,
            )
            for key in next(iter(per_field.values()))
        }
        meta = {"source": str(masks), "fields": metas}
    else:
        tables, meta = _quantify_one(
            masks,
            cfg,
            intensity=intensity,
            ratio=ratio,
            nilered=nilered,
            cells=cells,
            voxel_size_um=voxel_size_um,
            names=names,
            axes=axes,
            kind=kind,
            progress=progress,
        )
    if out_dir is not None:
        out = Path(out_dir)
        written = write_tables(tables, out)
        if cfg.figures:
            written.update(write_figures(tables, out, frame_interval_s=cfg.frame_interval_s))
        meta.update(n_objects=int(len(tables["objects"])), config=cfg.model_dump(mode="json"))
        meta["files"] = sorted(written)
        write_json(out / "quantify.json", meta)
    return tables


def _quantify_one(
    masks: str | Path | np.ndarray,
    cfg: QuantifyConfig,
    *,
    intensity: str | Path | np.ndarray | None = None,
    ratio: str | Path | np.ndarray | None = None,
    nilered: str | Path | np.ndarray | None = None,
    cells: str | Path | np.ndarray | None = None,
    voxel_size_um: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    axes: str | None = None,
    kind: str | None = None,
    progress: bool = False,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """One field (or time-lapse): tables and a metadata dict for ``quantify.json``."""
    import warnings

    from stainfree.quantify.inputs import frame_interval_from_json, load_masks
    from stainfree.quantify.run import quantify_source

    source = load_masks(masks, axes=axes, names=names, kind=kind)
    n_t, spatial = source.n_frames, source.spatial_shape
    extras = source.extras
    if nilered is None and intensity is None and ratio is None and "nilered" in extras:
        nilered = extras["nilered"]
    if cells is None and "cells" in extras:
        cells = extras["cells"]
    if "json" in extras and "frame_interval_s" not in cfg.model_fields_set:
        interval = frame_interval_from_json(extras["json"])
        if interval is not None:
            cfg = cfg.model_copy(update={"frame_interval_s": interval})
    shifts = None
    if nilered is not None:
        intensity, ratio, shifts = _quantify_nilered(nilered, n_t, spatial, cfg.channel_alignment)
    intensity = _quantify_aux(intensity, "intensity image", n_t, spatial)
    ratio = _quantify_aux(ratio, "ratio image", n_t, spatial)
    cells = _quantify_aux(cells, "cell map", n_t, spatial)
    if voxel_size_um is not None:
        vox = tuple(float(v) for v in voxel_size_um)
    else:
        vox = tuple(1.0 if v is None else float(v) for v in source.voxel_size_um)
        if any(v is None for v in source.voxel_size_um[3 - len(spatial) :]):
            warnings.warn(
                f"{source.source}: voxel size unknown; assuming 1 um (pass voxel_size_um / --voxel-size)",
                stacklevel=3,
            )
    tables = quantify_source(
        source, vox, config=cfg, intensity=intensity, ratio=ratio, cells=cells, progress=progress
    )
    meta = {
        "source": source.source,
        "kind": source.kind,
        "frames": n_t,
        "shape": list(spatial),
        "voxel_size_um": list(vox),
        "frame_interval_s": cfg.frame_interval_s,
        "structures": list(cfg.structures or source.names),
    }
    if shifts is not None:
        meta["nilered_channel_shift_px"] = shifts  # red onto yellow, (z, y, x) per frame
    return tables, meta
