"""The worker side of quantification as blocks: the tasks, and :class:`Field`, each worker's view of the run.

Every task reads what it needs from the working folder of the run (:mod:`stainfree.execute.quantify_blocks`):
the input masks (lazily, only its region), the local component ids of each labelling (``labels_<name>``,
int32 Zarr, chunks = blocks) and the merged numbering (``<name>.pkl``: per block the map of local to global
ids). A task writes its result as a record (``.stainfree-run/done/<stage>/<i>.pkl``) and returns its index.
"""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.execute.records import RUN_DIR, local_dask
from stainfree.quantify.blocklabels import BlockGrid, Merged, boundary_pairs, clip_region, label_block
from stainfree.quantify.maps import NUCLEUS_STRUCTURES, _structure_element

Region = tuple[slice, ...]

#: Labellings: which mask, connectivity (None = the configured one), smallest component.
LABELLINGS: dict[str, tuple[int | None, int]] = {
    "structures": (None, 0),
    "cells": (1, 1000),  # derive_cells' defaults
    "nuclei": (1, 100),
    "nucleus": (1, 1),  # components of the nucleus (measure_objects' inside distances)
}


def open_run(out: Path, key: str, marker: str) -> tuple[int | None, Path]:
    """Where a run of fingerprint ``key`` into ``out`` stands: the number of tasks of the finished run when
    ``out`` already holds its result (``marker`` in its run folder), else None; and the run's working folder,
    emptied when it belonged to another fingerprint (so that only records of this run are reused)."""
    import json
    import shutil

    from stainfree.execute.blocks import working_path

    path = out / RUN_DIR / marker
    done = json.loads(path.read_text()) if path.is_file() else {}
    if done.get("fingerprint") == key:
        return int(done.get("tasks", 0)), working_path(out)
    work = working_path(out)
    try:
        same = json.loads((work / RUN_DIR / "plan.json").read_text())["fingerprint"] == key
    except (OSError, ValueError, KeyError):
        same = False
    if not same:
        shutil.rmtree(work, ignore_errors=True)
        (work / RUN_DIR).mkdir(parents=True)
        (work / RUN_DIR / "plan.json").write_text(json.dumps({"fingerprint": key}))
    return None, work


def close_run(out: Path, key: str, marker: str, tasks: int, work: Path) -> None:
    """Mark the run of fingerprint ``key`` finished in ``out`` (``marker`` with its task count) and remove
    its working folder."""
    import json
    import shutil

    path = out / RUN_DIR / marker
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fingerprint": key, "tasks": tasks}))
    shutil.rmtree(work, ignore_errors=True)


def save_record(path: Path, value: Any) -> None:
    """Write a pickled record atomically."""
    from stainfree.atomic import write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def load_record(path: Path) -> Any:
    """Read a pickled record."""
    return pickle.loads(path.read_bytes())  # noqa: S301 - written by this run into its own folder


def record_path(work: str | Path, stage: str, index: int) -> Path:
    """Where task ``index`` of ``stage`` records its result."""
    return Path(work) / RUN_DIR / "done" / stage / f"{index}.pkl"


class Field:
    """One worker's (or the client's) view of a run: input masks, labellings and derived maps by region."""

    def __init__(self, job: dict[str, Any]) -> None:
        from stainfree.execute.blocks import _input_czyx

        self.job = job
        self.work = Path(job["work"])
        self.grid = BlockGrid(tuple(job["shape"]), tuple(job["block"]))
        self.shape = self.grid.shape
        self.names: list[str] = list(job["names"])
        self.spacing = np.asarray(job["spacing"], dtype=np.float64)
        self.source = _input_czyx(job["input"])
        self._merged: dict[str, tuple[float, Merged]] = {}
        self._inside: dict[int, tuple[Region, np.ndarray]] = {}
        self._stores: dict[str, Any] = {}

    # ----- inputs and labellings -----
    def mask(self, s: int, region: Region, seen: list[np.ndarray] | None = None) -> np.ndarray:
        """The input mask of structure ``s`` on ``region``; ``seen`` collects the values found (for a mask
        channel its first three distinct values, for a label map its smallest and largest)."""
        from stainfree.inference.predict import read_array

        channel = int(self.job["channels"][s])
        data = np.asarray(read_array(self.source[(channel if self.job["kind"] == "masks" else 0, *region)]))
        if self.job["kind"] == "labels":
            if seen is not None and data.size:
                seen.append(np.array([data.min(), data.max()], dtype=np.float64))
            return data == channel
        if seen is not None:
            seen.append(np.unique(data)[:3].astype(np.float64))
        return data > (0.5 if np.issubdtype(data.dtype, np.floating) else 0)

    def merged(self, name: str) -> Merged:
        """The merged numbering of labelling ``name``."""
        path = self.work / f"{name}.pkl"
        stamp = path.stat().st_mtime
        hit = self._merged.get(name)
        if hit is None or hit[0] != stamp:
            hit = (stamp, load_record(path))
            self._merged[name] = hit
        return hit[1]

    def labels(self, name: str, channel: int, region: Region) -> np.ndarray:
        """Global ids (int32, 0 = none or dropped) of channel ``channel`` of labelling ``name``."""
        import zarr

        if name not in self._stores:
            self._stores[name] = zarr.open_array(str(self.work / f"labels_{name}"), mode="r")
        local = np.asarray(self._stores[name][(channel, *region)])
        luts = self.merged(name).luts
        out = np.zeros(local.shape, dtype=np.int32)
        for b in self.grid.blocks_in(region):
            sub = tuple(
                slice(max(r.start, q.start) - r.start, min(r.stop, q.stop) - r.start)
                for r, q in zip(region, self.grid.region(b), strict=True)
            )
            out[sub] = luts[(channel, b)][local[sub]]
        return out

    def kept(self, s: int, region: Region) -> np.ndarray:
        return self.labels("structures", s, region) > 0

    def layers(self, region: Region) -> list[np.ndarray]:
        """The object-map layers on ``region``."""
        shape = tuple(r.stop - r.start for r in region)
        out = [np.zeros(shape, dtype=np.int32) for _ in range(max(1, int(self.job["n_layers"])))]
        for s, li in self.job["layer_of"].items():
            g = self.labels("structures", int(s), region)
            out[li][g > 0] = g[g > 0]
        return out

    def union(self, names: tuple[str, ...] | list[str], region: Region) -> np.ndarray:
        shape = tuple(r.stop - r.start for r in region)
        out = np.zeros(shape, dtype=bool)
        for s, n in enumerate(self.names):
            if n in names and str(s) in self.job["layer_of"]:
                out |= self.kept(s, region)
        return out

    def nuc(self, region: Region) -> np.ndarray:
        return self.union(NUCLEUS_STRUCTURES, region)

    def cells(self, region: Region) -> np.ndarray:
        """Derived cell ids (int64) on ``region``: components, split between nuclei, renumbered."""
        pre = self.labels("cells", 0, region).astype(np.int64)
        split = self.job.get("split") or {}
        for c, (lo, hi) in split.get("boxes", {}).items():
            inter = [(max(r.start, a), min(r.stop, b)) for r, a, b in zip(region, lo, hi, strict=True)]
            if any(a >= b for a, b in inter):
                continue
            crop = np.load(self.work / "splits" / f"{c}.npy", mmap_mode="r")
            part = np.asarray(crop[tuple(slice(a - o, b - o) for (a, b), o in zip(inter, lo, strict=True))])
            view = pre[
                tuple(slice(a - r.start, b - r.start) for (a, b), r in zip(inter, region, strict=True))
            ]
            m = part > 0
            view[m] = np.asarray(split["luts"][c])[part[m]]
        final = split.get("final")
        return np.asarray(final)[pre] if final is not None else pre

    def label_masks(self, name: str, region: Region, seen: list[np.ndarray] | None = None) -> np.ndarray:
        """The masks (C, region) labelling ``name`` labels (``seen``: see :meth:`mask`)."""
        if name == "structures":
            return np.stack([self.mask(s, region, seen) for s in range(len(self.names))])
        if name == "cells":
            others = [n for n in self.names if n != "extracellular"]
            return self.union(others, region)[None]
        if name == "nuclei":
            return (self.nuc(region) & (self.labels("cells", 0, region) > 0))[None]
        return self.nuc(region)[None]

    # ----- nucleus distances -----
    def signed(self, sl: Region, crop: np.ndarray) -> np.ndarray:
        """Signed distance to the nuclear surface on ``sl`` (exact where ``crop``), as measure_objects: the
        outside distance on a window grown until it is certain for every voxel of ``crop``, the inside one on
        each nucleus component's box."""
        from stainfree.quantify.measure import distance_transform

        full = tuple(slice(0, n) for n in self.shape)
        h = 8
        while True:
            win = clip_region(sl, h, self.shape)
            inner = tuple(slice(a.start - w.start, a.stop - w.start) for a, w in zip(sl, win, strict=True))
            nuc_w = self.nuc(win)
            if nuc_w.any():
                d = distance_transform(~nuc_w, self.spacing)[inner]
                margins = [
                    m * float(sp)
                    for w, a, n, sp in zip(win, sl, self.shape, self.spacing, strict=True)
                    for m, clipped in ((a.start - w.start, w.start == 0), (w.stop - a.stop, w.stop == n))
                    if not clipped
                ]
                free = crop & ~nuc_w[inner]
                if win == full or not free.any() or float(d[free].max()) <= min(margins, default=np.inf):
                    break
            elif win == full:
                d = np.full(crop.shape, np.inf, dtype=np.float32)
                break
            h *= 2
        comps = self.labels("nucleus", 0, sl)
        for k in np.unique(comps[crop]):
            if k == 0:
                continue
            box, values = self._inside_of(int(k))
            inter = [(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(sl, box, strict=True)]
            src = tuple(slice(x - b.start, y - b.start) for (x, y), b in zip(inter, box, strict=True))
            dst = tuple(slice(x - a.start, y - a.start) for (x, y), a in zip(inter, sl, strict=True))
            m = comps[dst] == k
            d[dst][m] = values[src][m]
        return d

    def _inside_of(self, k: int) -> tuple[Region, np.ndarray]:
        from stainfree.quantify.measure import distance_transform

        if k not in self._inside:
            if len(self._inside) > 64:
                self._inside.clear()
            m = self.merged("nucleus")
            box = clip_region(
                tuple(slice(int(a), int(b)) for a, b in zip(m.lo[k], m.hi[k], strict=True)), 1, self.shape
            )
            self._inside[k] = (box, -distance_transform(self.nuc(box), self.spacing))
        return self._inside[k]


_FIELDS: dict[str, Field] = {}
_FIELD_LOCK = threading.Lock()


def field_of(job: dict[str, Any]) -> Field:
    """This process's :class:`Field` of ``job`` (rebuilt when the job's description changes)."""
    key = repr(sorted((k, repr(v)) for k, v in job.items() if k not in ("stage", "items")))
    with _FIELD_LOCK:
        hit = _FIELDS.get(job["work"])
        if hit is None or getattr(hit, "_key", None) != key:
            hit = Field(job)
            hit._key = key  # type: ignore[attr-defined]
            _FIELDS[job["work"]] = hit
        return hit


def _structure(job: dict[str, Any], name: str) -> np.ndarray:
    conn = LABELLINGS[name][0] or int(job["connectivity"])
    ndim = len(job["shape"])
    return _structure_element(ndim, min(conn, ndim))


# ----- tasks ------------------------------------------------------------------------------------------------


@local_dask
def label_task(job: dict[str, Any], index: int) -> int:
    """Components of block ``index`` for labelling ``job["name"]``; local ids into its Zarr."""
    import zarr

    f = field_of(job)
    name = job["name"]
    region = f.grid.region(index)
    seen: list[np.ndarray] = []
    masks = f.label_masks(name, region, seen)
    labels, parts = label_block(masks, region, f.shape, _structure(job, name))
    for part, values in zip(parts, seen, strict=False):
        part["values"] = values  # the input's values, checked on the client
    zarr.open_array(str(f.work / f"labels_{name}"), mode="r+")[(slice(None), *region)] = labels
    save_record(record_path(f.work, job["stage"], index), parts)
    return index


@local_dask
def pairs_task(job: dict[str, Any], index: int) -> int:
    """Node pairs linked across boundary ``index`` (:meth:`BlockGrid.boundaries`) for every channel."""
    import zarr

    f = field_of(job)
    name = job["name"]
    axis, p, tile = f.grid.boundaries()[index]
    offsets = np.asarray(job["offsets"])
    store = zarr.open_array(str(f.work / f"labels_{name}"), mode="r")
    others = [k for k in range(len(f.shape)) if k != axis]

    def region(plane: int, t: tuple[slice, ...]) -> Region:
        out = list(t)
        out.insert(axis, slice(plane, plane + 1))
        return tuple(out)

    grown = clip_region(tile, 1, tuple(f.shape[k] for k in others))
    lo_r, hi_r = region(p - 1, tile), region(p, grown)
    structure = _structure(job, name)
    found = []
    for c in range(store.shape[0]):
        nodes = []
        for reg in (lo_r, hi_r):
            local = np.asarray(store[(c, *reg)]).astype(np.int64)  # type: ignore[index]
            ids = np.where(local > 0, offsets[c][f.grid.block_ids(reg)] + local, 0)
            nodes.append(np.take(ids, 0, axis=axis))
        pad = [(t.start - g.start, g.stop - t.stop) for t, g in zip(tile, grown, strict=True)]
        hi = np.pad(nodes[1], [(1 - a, 1 - b) for a, b in pad])
        found.append(boundary_pairs(nodes[0], hi, structure, axis))
    save_record(record_path(f.work, job["stage"], index), np.concatenate(found))
    return index


@local_dask
def overlap_task(job: dict[str, Any], index: int) -> int:
    """Which structures' kept voxels overlap in block ``index`` (the layers of the object map)."""
    f = field_of(job)
    region = f.grid.region(index)
    kept = [f.kept(s, region) for s in range(len(f.names))]
    n = len(kept)
    hit = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            hit[i, j] = hit[j, i] = bool(np.any(kept[i] & kept[j]))
    save_record(record_path(f.work, job["stage"], index), hit)
    return index


@local_dask
def split_task(job: dict[str, Any], index: int) -> int:
    """Split crowded cell ``job["items"][index]`` between its nuclei (derive_cells' watershed)."""
    from skimage.segmentation import watershed

    f = field_of(job)
    c = int(job["items"][index])
    m = f.merged("cells")
    sl = tuple(slice(int(a), int(b)) for a, b in zip(m.lo[c], m.hi[c], strict=True))
    region = f.labels("cells", 0, sl) == c
    markers = np.where(region, f.labels("nuclei", 0, sl), 0)
    split = watershed(np.zeros(region.shape, np.uint8), markers=markers, mask=region).astype(np.int32)
    (f.work / "splits").mkdir(exist_ok=True)
    tmp = f.work / "splits" / f".{c}.{os.getpid()}.npy"
    np.save(tmp, split)
    os.replace(tmp, f.work / "splits" / f"{c}.npy")
    ids = np.unique(split[split > 0])
    counts = np.bincount(split.ravel())[ids]
    from scipy import ndimage as ndi

    boxes = ndi.find_objects(split)
    z0 = [boxes[i - 1][0].start + sl[0].start for i in ids]
    save_record(record_path(f.work, job["stage"], index), {"ids": ids, "counts": counts, "z0": z0})
    return index


@local_dask
def sums_task(job: dict[str, Any], index: int) -> int:
    """Contact sums (touching voxels, or within ``job["distance_um"]``) and voxels per (cell, structure) of
    block ``index``."""
    from stainfree.quantify.blockcontacts import contact_halo, distance_partials
    from stainfree.quantify.blocklabels import contact_partials

    f = field_of(job)
    core = f.grid.region(index)
    distance = job.get("distance_um")
    win = clip_region(core, 1 if distance is None else contact_halo(distance, f.spacing), f.shape)
    inner = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(core, win, strict=True))
    layers = f.layers(win)
    struct_of = np.asarray(job["struct_of"])
    n_s = len(f.names)
    out = contact_partials(layers, inner, tuple(w.start for w in win), f.shape, struct_of, n_s)
    if distance is not None:  # contacts within a distance: their faces, voxels and pairs
        out.update(distance_partials(layers, inner, struct_of, f.names, f.spacing, distance))
    if job.get("split") is not None:
        cells = f.cells(core)
        flat: list[np.ndarray] = []
        for layer in layers:
            s = struct_of.astype(np.int64)[layer[inner]]
            fg = (s >= 0) & (cells > 0)
            flat.append(cells[fg] * n_s + s[fg])
        keys, counts = np.unique(np.concatenate(flat), return_counts=True)
        out["cell_structure"] = (keys, counts)
    save_record(record_path(f.work, job["stage"], index), out)
    return index


@local_dask
def objects_task(job: dict[str, Any], index: int) -> int:
    """Whole-object measurements (:func:`~stainfree.quantify.measure.measure_crop`) of a batch of objects,
    each on its bounding box read from the labels (the cell map and nucleus distances on the same box)."""
    from stainfree.quantify.measure import measure_crop

    f = field_of(job)
    m = f.merged("structures")
    cells_on = job.get("split") is not None
    cell_base = np.asarray(job["cell_base"], dtype=np.int64)
    rows = {}
    for gid in job["items"][index]:
        s = int(m.channel[gid])
        sl = tuple(slice(int(a), int(b)) for a, b in zip(m.lo[gid], m.hi[gid], strict=True))
        crop = f.labels("structures", s, sl) == gid
        signed = f.signed(sl, crop) if job["nucleus"] else None
        values = measure_crop(
            crop,
            sl,
            int(m.count[gid]),
            f.spacing,
            signed=signed,
            cells=f.cells(sl) if cells_on else None,
            cell_base=cell_base,
            field_base=int(job["field_base"]),
            flat3d=f.shape[0] > 1,
            smoothing_sigma=float(job["sigma"]),
        )
        if signed is not None:  # the sum in raster order, as np.bincount over the whole field
            values["signed_sum"] = float(
                np.bincount(np.zeros(int(crop.sum()), np.intp), weights=signed[crop])[0]
            )
        rows[int(gid)] = values
    save_record(record_path(f.work, job["stage"], index), rows)
    return index
