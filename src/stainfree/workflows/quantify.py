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
    extra_channels: Sequence[tuple[str | Path | np.ndarray, str]] = (),
    group_by: str | None = None,
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
    extra_channels : sequence of (path or ndarray, name)
        Measured channels (e.g. microtubules, one channel shaped like the masks) turned into structures of
        their own by an Otsu threshold per frame (:func:`stainfree.quantify.compose.otsu_structure`): they
        appear in the objects and contact tables under their names. One field only.
    group_by : str, optional
        Group cells: ``"phase"`` (the mitotic phase of each cell from the simulator's ``field.json``, else a
        manifest column) or any manifest column. Adds the ``groups`` and ``group_distances`` tables and their
        figures (see :mod:`stainfree.quantify.groups`).

    Returns
    -------
    dict of str -> pandas.DataFrame
        ``objects, structures, cells, contacts, contact_matrix, object_contacts, timeseries, links,
        contact_events`` (see :data:`stainfree.quantify.run.TABLES`), plus ``groups`` and
        ``group_distances`` with ``group_by``.
    """

    from contextlib import nullcontext

    from stainfree.config import QuantifyConfig, resolve
    from stainfree.lock import output_lock

    cfg = resolve(QuantifyConfig, config)
    with output_lock(out_dir) if out_dir is not None else nullcontext():
        return _quantify(
            masks,
            out_dir,
            cfg,
            intensity,
            ratio,
            nilered,
            cells,
            voxel_size_um,
            names,
            axes,
            kind,
            progress,
            extra_channels,
            group_by,
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
    extra_channels: Sequence[tuple[str | Path | np.ndarray, str]] = (),
    group_by: str | None = None,
) -> dict[str, pd.DataFrame]:
    import numpy as np
    import pandas as pd

    from stainfree.io.writers import write_json
    from stainfree.quantify.figures import write_figures, write_tables
    from stainfree.quantify.inputs import dataset_fields

    fields = None if isinstance(masks, np.ndarray) else dataset_fields(masks)
    if fields:  # a simulated data set: every field, tables stacked with a "field" column
        if extra_channels:
            from stainfree.errors import InputError

            raise InputError(str(masks), "--extra-channel takes one field, not a data set")
        column = _manifest_column(Path(str(masks)), group_by) if group_by is not None else {}
        per_field, metas = {}, []
        for name, folder in fields:
            groups = None
            if group_by is not None:
                groups = _field_groups(folder, group_by, column.get(name), str(masks))
            per_field[name], meta = _quantify_one(
                folder,
                cfg,
                voxel_size_um=voxel_size_um,
                names=names,
                kind=kind,
                progress=progress,
                cell_groups=None if groups is None or group_by is None else (group_by, groups),
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
        groups = None
        if group_by is not None:
            groups = _field_groups(
                masks, group_by, None, str(masks) if not isinstance(masks, np.ndarray) else ""
            )
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
            extra_channels=extra_channels,
            cell_groups=None if groups is None or group_by is None else (group_by, groups),
        )
    if group_by is not None:
        from stainfree.quantify.groups import distance_summary, group_table

        hist = tables.pop("group_voxel_histograms")
        tables["group_distances"] = distance_summary(hist, group_by=group_by)
        tables["groups"] = group_table(
            tables["objects"], tables["cells"], group_by=group_by, distances=tables["group_distances"]
        )
        tables["group_voxel_histograms"] = hist
        meta["group_by"] = group_by
    if out_dir is not None:
        out = Path(out_dir)
        written = write_tables(tables, out)
        if cfg.figures:
            written.update(write_figures(tables, out, frame_interval_s=cfg.frame_interval_s))
            if group_by is not None:
                from stainfree.quantify.groups import group_figures

                written.update(group_figures(tables, out, group_by=group_by))
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
    extra_channels: Sequence[tuple[str | Path | np.ndarray, str]] = (),
    cell_groups: tuple[str, dict[int, str] | str] | None = None,
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
    if extra_channels:
        from stainfree.quantify.compose import ExtraStructureSource, otsu_structure
        from stainfree.workflows.compose import load_extra_channels

        loaded = load_extra_channels(extra_channels, n_t, spatial)
        source = ExtraStructureSource.wrap(
            source, {name: otsu_structure(a, len(spatial)) for name, a in loaded.items()}
        )
        if cfg.structures is not None:
            cfg = cfg.model_copy(update={"structures": [*cfg.structures, *loaded]})
    hook, histograms = None, []
    if cell_groups is not None:
        from stainfree.quantify.groups import voxel_distances

        column, groups = cell_groups

        def hook(t: int, omap: Any, cells_t: Any) -> None:
            if cells_t is not None:
                histograms.append(voxel_distances(omap, cells_t, vox, groups, frame=t, group_by=column))

    tables = quantify_source(
        source,
        vox,
        config=cfg,
        intensity=intensity,
        ratio=ratio,
        cells=cells,
        progress=progress,
        frame_hook=hook,
    )
    if cell_groups is not None:
        import pandas as pd

        from stainfree.quantify.groups import assign_groups, empty_histograms

        column, groups = cell_groups
        for key in ("objects", "cells"):
            tables[key] = assign_groups(tables[key], groups, column)
        tables["group_voxel_histograms"] = (
            pd.concat(histograms, ignore_index=True) if histograms else empty_histograms(column)
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


def _manifest_column(masks: str | Path, column: str) -> dict[str, str]:
    """Field name -> value of a manifest column (empty when the manifest has no such column)."""
    import pandas as pd

    p = Path(masks)
    manifest = p / "manifest.csv" if p.is_dir() else p
    table = pd.read_csv(manifest)
    if column not in table.columns:
        return {}
    return {str(f): str(v) for f, v in zip(table["field"], table[column], strict=True)}


def _field_groups(
    masks: str | Path | np.ndarray, group_by: str, column_value: str | None, source: str
) -> dict[int, str] | str:
    """The group of every cell of one field: ``{cell id: group}`` from the cells of a simulator field.json
    (their ``group_by`` key; for "phase" an interphase-only field is all "interphase"), else the field's
    manifest value for every cell (a str)."""
    import json

    from stainfree.errors import InputError

    meta_path = Path(masks) / "field.json" if isinstance(masks, (str, Path)) else None
    if meta_path is not None and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        from stainfree.quantify.groups import cell_groups_from_field

        found = cell_groups_from_field(meta, group_by)
        if found is not None:
            return found
    if column_value is not None:
        return column_value
    raise InputError(
        source or "masks",
        f"no {group_by!r} for its cells: neither the simulator's field.json nor a manifest column gives one",
    )
