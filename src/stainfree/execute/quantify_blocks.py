"""One large mask image quantified as blocks on a Dask cluster, with the tables of the in-memory path.

The stages (each a set of tasks on the workers, :mod:`stainfree.execute.quantify_tasks`; each task records its
result, so a rerun of a killed run computes only what has no record):

1. ``structures``: connected components of every structure per block (the configured connectivity), then the
   components touching across block boundaries (union-find on the client,
   :func:`stainfree.quantify.blocklabels.merge_components`), the size filter on the merged objects and the
   numbering of the whole-field ``ObjectMap`` (structure, then first voxel in raster order);
2. ``overlaps``: which structures overlap, hence the object map's layers (as ``build_object_map`` assigns
   them);
3. derived cells (``derive_cells``): components of the non-extracellular voxels and of the nuclei in them (the
   same machinery), and the watershed split of each cell holding two or more nuclei, on that cell's box;
4. ``nucleus``: components of the nucleus (for the inside distances of ``measure_objects``);
5. ``sums``: per block with a one-voxel halo, the integer sums of the contact tables and the voxels of each
   structure in each cell;
6. ``objects``: each object measured on its bounding box (moments, mesh, cell majority, nucleus distances
   with a window grown until the outside distance is certain), by :func:`~stainfree.quantify.measure.
   measure_crop`, the function of the in-memory path; or, for objects whose box holds more than
   ``large_voxels``, block by block (:mod:`stainfree.execute.quantify_large`).

The tables then follow from the same functions as in memory (``contact_tables``, ``cell_summary``,
``assemble_tables``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stainfree.errors import InputError
from stainfree.execute.blocks import BlockRun, _run
from stainfree.execute.quantify_large import measure_large
from stainfree.execute.quantify_tasks import (
    LABELLINGS,
    close_run,
    label_task,
    load_record,
    objects_task,
    open_run,
    overlap_task,
    pairs_task,
    record_path,
    save_record,
    split_task,
    sums_task,
)
from stainfree.execute.records import file_stamp, fingerprint
from stainfree.quantify.blocklabels import BlockGrid, merge_components, node_offsets
from stainfree.quantify.maps import NUCLEUS_STRUCTURES
from stainfree.quantify.measure import CELL_SAMPLE

__all__ = ["quantify_blocks", "quantifiable_as_blocks"]

_IGNORED = ("labels", "label_map", "label", "background")

#: Blocks of at most this many voxels where the input's chunks are too small to be blocks.
DEFAULT_BLOCK_VOXELS = 1 << 24
#: Chunks of at least this many voxels are the blocks by default (e.g. those of ``segment_blocks``).
MIN_CHUNK_VOXELS = 1 << 20


class _Stopped(Exception):
    """The task budget of a run (``max_tasks``) is spent."""


def quantifiable_as_blocks(input_path: str | os.PathLike, config: Any) -> str | None:
    """Why ``input_path`` cannot be quantified as blocks with ``config`` (None when it can)."""
    from stainfree.io.readers import read_image

    _, meta = read_image(input_path, lazy=True)
    if "T" in meta.axes or "Z" not in meta.axes:
        return "the block engine takes one 3D frame (no time axis)"
    return None


def _inputs(input_path: str | os.PathLike, config: Any) -> dict[str, Any]:
    """Kind, structures, their channels, shape and voxel size of a mask image (as ``load_masks`` reads it)."""
    from stainfree.io.readers import read_image
    from stainfree.types import COMPARTMENTS

    image, meta = read_image(input_path, lazy=True)
    why = quantifiable_as_blocks(input_path, config)
    if why is not None:
        raise InputError(input_path, why)
    shape = tuple(int(s) for a, s in zip(meta.axes, image.shape, strict=True) if a in "ZYX")
    if "C" in meta.axes:
        n_c = int(image.shape[meta.axes.index("C")])
        chans = list(meta.channel_names) if len(meta.channel_names) == n_c else []
        if not chans:
            chans = list(COMPARTMENTS) if n_c == len(COMPARTMENTS) else []
        if not chans:
            raise InputError(input_path, f"{n_c} channels without names")
        index = {c: i for i, c in enumerate(chans) if c.lower() not in _IGNORED}
        kind = "masks"
    else:
        index = {c: i + 1 for i, c in enumerate(COMPARTMENTS)}
        kind = "labels"
    names = list(config.structures) if config.structures else list(index)
    unknown = [s for s in names if s not in index]
    if unknown:
        raise InputError(input_path, f"unknown structure(s) {unknown}; the input has {list(index)}")
    vox = meta.voxel_size_um
    if any(v is None for v in vox):
        warnings.warn(
            f"{input_path}: voxel size unknown; assuming 1 um (pass voxel_size_um / --voxel-size)",
            stacklevel=3,
        )
    chunks = getattr(image, "chunksize", None)
    return {
        "kind": kind,
        "integer": bool(np.issubdtype(image.dtype, np.integer)),
        "names": names,
        "channels": [index[s] for s in names],
        "shape": shape,
        "spacing": [1.0 if v is None else float(v) for v in vox],
        "chunks": tuple(int(c) for a, c in zip(meta.axes, chunks, strict=True) if a in "ZYX")
        if chunks
        else None,
    }


class _Runner:
    """Runs the stages of one run on a client, skipping recorded tasks; counts computed and skipped tasks."""

    def __init__(self, client: Any, work: Path, progress: bool, max_tasks: int | None) -> None:
        self.client, self.work, self.progress = client, work, progress
        self.budget = max_tasks
        self.computed = self.skipped = 0

    def stage(self, job: dict[str, Any], stage: str, n: int, task: Any, what: str) -> list[Any]:
        job = {**job, "stage": stage}
        todo = [i for i in range(n) if not record_path(self.work, stage, i).is_file()]
        self.skipped += n - len(todo)
        stop = self.budget is not None and len(todo) > self.budget
        if self.budget is not None:
            todo = todo[: self.budget]
            self.budget -= len(todo)
        _run(self.client, job, todo, self.progress, task, what)
        self.computed += len(todo)
        if stop:
            raise _Stopped
        return [load_record(record_path(self.work, stage, i)) for i in range(n)]

    def labelling(self, job: dict[str, Any], name: str, n_channels: int) -> Any:
        """Stage ``name``: components per block, boundary pairs, merged numbering (``<name>.pkl``)."""
        import zarr

        grid = BlockGrid(tuple(job["shape"]), tuple(job["block"]))
        store = self.work / f"labels_{name}"
        if not store.exists():
            zarr.open_array(
                str(store),
                mode="w",
                shape=(n_channels, *grid.shape),
                chunks=(1, *grid.block),
                dtype=np.int32,
                fill_value=0,
                zarr_format=3,
            )
        job = {**job, "name": name}
        parts = self.stage(job, f"{name}-label", len(grid), label_task, f"{name}: components")
        offsets = node_offsets(dict(enumerate(parts)), len(grid), n_channels)
        job["offsets"] = offsets.tolist()
        pairs = self.stage(job, f"{name}-pairs", len(grid.boundaries()), pairs_task, f"{name}: boundaries")
        min_size = LABELLINGS[name][1] or int(job["min_size"])
        merged = merge_components(dict(enumerate(parts)), pairs, n_channels, min_size)
        path = self.work / f"{name}.pkl"
        if not path.is_file():
            save_record(path, merged)
        return load_record(path)


def quantify_blocks(
    client: Any,
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: Any = None,
    max_block_voxels: int | None = None,
    large_voxels: int | None = None,
    max_tasks: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Quantify one 3D mask image (e.g. ``<stem>_masks.ome.zarr`` of ``segment_blocks``) as blocks.

    Every table equals that of :func:`stainfree.api.quantify` on the same image, value for value (the
    integer sums are exact and every floating-point value is formed by the in-memory code from the same
    inputs in the same order; see the module docstring), unless ``large_voxels`` is given. Contacts within
    a distance (``contact_distance_nm``) are summed per block over a halo of that distance
    (:mod:`stainfree.quantify.blockcontacts`); time-lapses run one task per time point instead
    (:mod:`stainfree.execute.quantify_frames`).

    Parameters
    ----------
    client : distributed.Client
        Where the tasks run (:func:`stainfree.execute.cluster.open_client`).
    input_path, out_dir : path
        The mask image (a 15-channel mask stack or a label map, read lazily by region), the output folder
        (tables, figures and ``quantify.json`` as the per-position path writes them).
    config : QuantifyConfig, optional
        Settings.
    max_block_voxels : int, optional
        Largest block (default: the input's chunks when they hold at least ``MIN_CHUNK_VOXELS``, else blocks
        of at most ``DEFAULT_BLOCK_VOXELS``).
    large_voxels : int, optional
        Objects whose bounding box holds more voxels are measured block by block, in bounded memory
        (:mod:`stainfree.execute.quantify_large`): then their ``surface_um2`` and ``sphericity`` agree with
        the in-memory values to ~1e-7 (marching cubes places vertices in float32 index coordinates, which
        round differently in a block's frame) and ``nucleus_distance_signed_um`` to the last bits (a float
        sum in another order); every other value stays identical. Default: none (every object measured on
        its bounding box in one task: identical tables, but an object as large as the field needs the
        memory of the in-memory path).
    max_tasks : int, optional
        Compute at most this many unfinished tasks, then stop with the run resumable.
    progress : bool
        Show a progress bar per stage.

    Returns
    -------
    dict
        ``output`` (None until complete), ``tables`` (None until complete) and ``blocks``
        (:class:`~stainfree.execute.blocks.BlockRun`: tasks in all, computed now and found done).
    """
    from stainfree.config import QuantifyConfig

    cfg = config if config is not None else QuantifyConfig()
    info = _inputs(input_path, cfg)
    chunks = info["chunks"]
    if max_block_voxels is None and (chunks is None or int(np.prod(chunks)) < MIN_CHUNK_VOXELS):
        max_block_voxels = DEFAULT_BLOCK_VOXELS
    grid = BlockGrid.plan(info["shape"], max_block_voxels, chunks)
    large = int(large_voxels) if large_voxels is not None else int(np.prod(grid.shape))
    out = Path(out_dir)
    key = fingerprint(
        {
            "input": file_stamp(input_path),
            "config": cfg.model_dump(mode="json"),
            "block": grid.block,
            "large": large,
        }
    )
    finished, work = open_run(out, key, "quantify-blocks.json")
    if finished is not None:  # finished before: nothing to do
        return {"output": out, "tables": None, "blocks": BlockRun(out, finished, 0, finished)}
    job: dict[str, Any] = {
        "key": key,
        "work": str(work),
        "input": str(Path(input_path).resolve()),
        "shape": list(grid.shape),
        "block": list(grid.block),
        "names": info["names"],
        "channels": info["channels"],
        "kind": info["kind"],
        "integer": info["integer"],
        "spacing": info["spacing"],
        "connectivity": int(cfg.connectivity),
        "min_size": int(cfg.min_size_voxels),
        "layer_of": {},
        "n_layers": 1,
        "large": large,
        "distance_um": cfg.contact_distance_um(tuple(info["spacing"])),  # None: touching voxels
    }
    runner = _Runner(client, work, progress, max_tasks)
    try:
        tables = _stages(runner, job, cfg, grid)
    except _Stopped:
        return {"output": None, "tables": None, "blocks": BlockRun(None, 0, runner.computed, runner.skipped)}
    meta = {
        "source": str(input_path),
        "kind": info["kind"],
        "frames": 1,
        "shape": list(grid.shape),
        "voxel_size_um": info["spacing"],
        "frame_interval_s": cfg.frame_interval_s,
        "structures": info["names"],
        "blocks": {"block": list(grid.block), "count": len(grid)},
    }
    _write(tables, out, cfg, meta)
    total = runner.computed + runner.skipped
    close_run(out, key, "quantify-blocks.json", total, work)
    return {"output": out, "tables": tables, "blocks": BlockRun(out, total, runner.computed, runner.skipped)}


def _write(tables: dict[str, pd.DataFrame], out: Path, cfg: Any, meta: dict[str, Any]) -> None:
    from stainfree.io.writers import write_json
    from stainfree.quantify.figures import write_figures, write_tables

    out.mkdir(parents=True, exist_ok=True)
    written = write_tables(tables, out)
    if cfg.figures:
        written.update(write_figures(tables, out, frame_interval_s=cfg.frame_interval_s))
    meta.update(n_objects=int(len(tables["objects"])), config=cfg.model_dump(mode="json"))
    meta["files"] = sorted(written)
    write_json(out / "quantify.json", meta)


def _layers(overlaps: list[np.ndarray], present: list[int], n_s: int) -> dict[str, int]:
    """Layer of each structure with objects, as ``build_object_map`` fills them (first layer it fits)."""
    hit = np.zeros((n_s, n_s), dtype=bool)
    for o in overlaps:
        hit |= o
    members: list[list[int]] = []
    layer_of: dict[str, int] = {}
    for s in present:
        for li, group in enumerate(members):
            if not hit[s, group].any():
                group.append(s)
                layer_of[str(s)] = li
                break
        else:
            members.append([s])
            layer_of[str(s)] = len(members) - 1
    return layer_of


def _stages(runner: _Runner, job: dict[str, Any], cfg: Any, grid: BlockGrid) -> dict[str, pd.DataFrame]:
    names = job["names"]
    n_s = len(names)
    objs = runner.labelling(job, "structures", n_s)
    _check_values(runner, job, len(grid))
    present = sorted({int(c) for c in objs.channel[1:]})
    overlaps = runner.stage(job, "overlaps", len(grid), overlap_task, "overlaps")
    job["layer_of"] = _layers(overlaps, present, n_s)
    job["n_layers"] = max(job["layer_of"].values(), default=0) + 1
    job["struct_of"] = objs.channel.tolist()
    field_base = _field_base(objs, names)
    cells = None
    if cfg.derive_cells:
        cells = _derive_cells(runner, job, objs)
        job["split"] = cells["split"]
    nucleus = any(names[int(c)] in NUCLEUS_STRUCTURES for c in objs.channel[1:])
    if nucleus:
        runner.labelling(job, "nucleus", 1)
    sums = runner.stage(job, "sums", len(grid), sums_task, "contacts")
    cell_base = [field_base]
    if cells is not None:
        cell_base += [int(z) for z in cells["z0"][1:]]
    large = {g for g in range(1, objs.n + 1) if int(np.prod(objs.hi[g] - objs.lo[g])) > int(job["large"])}
    batches = _batches(objs, large)
    job.update(
        cell_base=cell_base,
        field_base=field_base,
        nucleus=nucleus,
        sigma=float(cfg.surface_smoothing_voxels),
        cell_sample=CELL_SAMPLE,
        items=batches,
    )
    parts = runner.stage(job, "objects", len(batches), objects_task, "objects")
    rows = {gid: v for p in parts for gid, v in p.items()}
    if large:
        rows.update(measure_large(runner, job, objs, large, grid))
    return _tables(cfg, job, objs, rows, sums, cells)


def _check_values(runner: _Runner, job: dict[str, Any], n_blocks: int) -> None:
    """What ``load_masks`` would refuse or read otherwise: label values beyond the names, or a channel stack
    holding several ids per channel (an instance stack, quantified in memory)."""
    found: dict[int, set[float]] = {}
    for i in range(n_blocks):
        for c, part in enumerate(load_record(record_path(runner.work, "structures-label", i))):
            found.setdefault(c, set()).update(float(v) for v in part.get("values", ()))
    values = set().union(*found.values()) if found else set()
    if job["kind"] == "labels":
        if values and (min(values) < 0 or max(values) > 15 or any(v % 1 for v in values)):
            raise InputError(job["input"], "label values must be integers in 0..15 (one per compartment)")
    elif job["integer"] and values and max(values) > 1:
        if any(len(v) > 2 for v in found.values()):
            raise InputError(job["input"], "several ids per channel (an instance stack): quantify in memory")


def _field_base(objs: Any, names: list[str]) -> int:
    """Lowest plane holding a voxel of a non-extracellular object (0 when none), as measure_objects."""
    ok = [g for g in range(1, objs.n + 1) if names[int(objs.channel[g])] != "extracellular"]
    return int(min(objs.lo[g][0] for g in ok)) if ok else 0


def _batches(objs: Any, skip: set[int], budget: int = 1 << 21) -> list[list[int]]:
    """Objects (but ``skip``) in batches of about ``budget`` bounding-box voxels (one task each)."""
    out: list[list[int]] = []
    size = budget
    for g in range(1, objs.n + 1):
        if g in skip:
            continue
        v = int(np.prod(objs.hi[g] - objs.lo[g]))
        if size + v > budget or len(out[-1]) >= 64:
            out.append([])
            size = 0
        out[-1].append(g)
        size += v
    return out


def _derive_cells(runner: _Runner, job: dict[str, Any], objs: Any) -> dict[str, Any]:
    """Cells as ``derive_cells``: components, nuclei in them, crowded cells split; final ids and their counts
    and lowest planes."""
    from stainfree.execute.quantify_tasks import field_of

    cells = runner.labelling(job, "cells", 1)
    nuclei = runner.labelling(job, "nuclei", 1)
    n_cells = cells.n
    count = cells.count.astype(np.int64).copy()
    z0 = cells.lo[:, 0].astype(np.int64).copy()
    split: dict[str, Any] = {"boxes": {}, "luts": {}, "final": None}
    if nuclei.n >= 2:
        f = field_of(job)
        owner = np.zeros(nuclei.n + 1, dtype=np.int64)
        for k in range(1, nuclei.n + 1):
            at = np.unravel_index(int(nuclei.first[k]), tuple(job["shape"]))
            owner[k] = int(f.labels("cells", 0, tuple(slice(int(a), int(a) + 1) for a in at)).ravel()[0])
        per_cell = np.bincount(owner[1:], minlength=n_cells + 1)
        crowded = [int(c) for c in np.flatnonzero(per_cell >= 2)]
        if crowded:
            parts = runner.stage({**job, "items": crowded}, "split", len(crowded), split_task, "cells")
            next_id = n_cells + 1
            extra: dict[int, tuple[int, int]] = {}  # pre-final id of a split part -> (voxels, lowest plane)
            for c, part in zip(crowded, parts, strict=True):
                ids = np.asarray(part["ids"])
                lut = np.zeros(int(ids.max()) + 1, dtype=np.int64)
                lut[ids] = np.arange(next_id, next_id + ids.size)
                lut[ids[0]] = c  # as derive_cells: the first part keeps the id, its new id stays unused
                count[c] = int(part["counts"][0])
                z0[c] = int(part["z0"][0])
                for k in range(1, ids.size):
                    extra[int(lut[ids[k]])] = (int(part["counts"][k]), int(part["z0"][k]))
                next_id += ids.size
                split["boxes"][c] = (cells.lo[c].tolist(), cells.hi[c].tolist())
                split["luts"][c] = lut.tolist()
            count = np.concatenate([count, np.zeros(next_id - count.size, dtype=np.int64)])
            z0 = np.concatenate([z0, np.zeros(next_id - z0.size, dtype=np.int64)])
            for k, (n_vox, z) in extra.items():
                count[k], z0[k] = n_vox, z
            keep = count >= LABELLINGS["cells"][1]
            keep[0] = False
            final = np.zeros(count.size, dtype=np.int64)
            final[keep] = np.arange(1, int(keep.sum()) + 1)
            split["final"] = final.tolist()
            count = np.concatenate([[0], count[keep]])
            z0 = np.concatenate([[0], z0[keep]])
    return {"split": split, "count": count, "z0": z0}


def _tables(
    cfg: Any,
    job: dict[str, Any],
    objs: Any,
    rows: dict[int, dict[str, float]],
    sums: list[dict[str, Any]],
    cells: dict[str, Any] | None,
) -> dict[str, pd.DataFrame]:
    from stainfree.quantify.contacts import area_sums, contact_tables
    from stainfree.quantify.measure import OBJECT_COLUMNS, _empty_objects
    from stainfree.quantify.run import assemble_tables
    from stainfree.quantify.summaries import cell_summary

    names = job["names"]
    n_s = len(names)
    vz, vy, vx = (float(v) for v in job["spacing"])
    spacing = np.array([vz, vy, vx])
    voxel_volume = vz * vy * vx
    n = objs.n
    counts = objs.count.astype(np.int64)
    if n == 0:
        obj = _empty_objects()
    else:
        table: dict[str, Any] = {
            "frame": np.zeros(n, dtype=np.int64),
            "structure": np.array(names, dtype=object)[objs.channel[1:].astype(np.int64)],
            "object_id": objs.rank[1:].astype(np.int64),
            "cell_id": np.zeros(n, dtype=np.int64),
            "n_voxels": counts[1:],
            "volume_um3": counts[1:] * voxel_volume,
        }
        for col in list(OBJECT_COLUMNS)[6:]:
            table.setdefault(col, np.full(n, np.nan))
        for gid, values in rows.items():
            signed_sum = values.pop("signed_sum", None)
            if signed_sum is not None:
                values["nucleus_distance_signed_um"] = signed_sum / max(int(counts[gid]), 1)
            for k, v in values.items():
                table[k][gid - 1] = v
        obj = pd.DataFrame(table, index=np.arange(1, n + 1))[list(OBJECT_COLUMNS)]
        obj.index.name = "uid"
    areas = [vy * vx, vz * vx, vz * vy]
    faces = sum(s["faces"] for s in sums)
    exposed_n = sum(s["exposed"] for s in sums)
    exposed = np.zeros(n_s)
    for li in range(exposed_n.shape[0]):
        for axis in range(3):
            exposed += exposed_n[li, axis] * areas[axis]
    area_values = np.array(areas)
    keys = np.arange(n_s * n_s)
    flat_faces = faces.reshape(n_s * n_s, 3)
    area_sum = area_sums(
        np.repeat(keys, 3), np.tile(area_values, keys.size), flat_faces.ravel().astype(np.float64), keys.size
    )
    contact_vox = sum(s["voxels"] for s in sums)
    pair_faces: dict[int, np.ndarray] = {}
    for s in sums:
        for code, per in s["pairs"].items():
            pair_faces[code] = pair_faces.get(code, 0) + per
    uniq = np.array(sorted(pair_faces), dtype=np.int64)
    per_pair = np.array([pair_faces[int(c)] for c in uniq], dtype=np.float64).reshape(uniq.size, 3)
    # adjacency: every face counted from both sides, as the in-memory records
    twice = 2.0 if job.get("distance_um") is None else 1.0
    face_area = (
        area_sums(
            np.repeat(np.arange(uniq.size), 3),
            np.tile(area_values, uniq.size),
            twice * per_pair.ravel(),
            uniq.size,
        )
        / twice
    )
    struct_of = objs.channel.astype(np.int64)
    per_structure = np.bincount(struct_of[1:], weights=counts[1:], minlength=n_s)
    contacts, obj_contacts = contact_tables(
        names, struct_of, objs.rank, per_structure, exposed, area_sum, contact_vox, uniq, face_area,
        voxel_volume=voxel_volume, distance_um=job.get("distance_um"), frame=0,
    )  # fmt: skip
    cell_rows, in_cells, cells_volume = [], [], {}
    if cells is not None:
        ids = np.flatnonzero(cells["count"])
        ids = ids[ids > 0]
        cv = pd.Series(cells["count"][ids] * float(np.prod(spacing)), index=pd.Index(ids, name="cell_id"))
        flat: dict[int, int] = {}
        for s in sums:
            for k, c in zip(*s.get("cell_structure", ((), ())), strict=True):
                flat[int(k)] = flat.get(int(k), 0) + int(c)
        keys = np.array(sorted(k for k, c in flat.items() if c), dtype=np.int64)
        cid, sid = np.divmod(keys, n_s)
        index = pd.MultiIndex.from_arrays(
            [cid, np.array(names, dtype=object)[sid]], names=["cell_id", "structure"]
        )
        sv = pd.Series(
            np.array([flat[int(k)] for k in keys], dtype=np.int64) * float(np.prod(spacing)),
            index=index,
            dtype="float64",
        )
        cell_rows.append(cell_summary(obj, cv, structure_volumes=sv, frame=0))
        cells_volume[0] = float(cv.sum())
        in_cells.append(pd.concat({0: sv.groupby(level="structure").sum()}, names=["frame"]))
    return assemble_tables(
        cfg,
        names,
        1,
        objects=[obj],
        cell_rows=cell_rows,
        cells_volume=cells_volume,
        in_cells=in_cells,
        contacts=[contacts],
        obj_contacts=[obj_contacts],
        links=[],
        raw_events=[],
    )
