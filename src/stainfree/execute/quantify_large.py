"""Objects larger than a block, measured block by block (:mod:`stainfree.quantify.blockobjects`): two stages
of tasks, one per block holding part of such objects, and the client's sums.

``large-parts``: per object part, its marginals, voxels, cells (all, or rows for the raster ranks of a
subsample), nucleus distances (minimum and sum) and the largest smoothed value it holds; ``large-mesh``: per
part, its share of the mesh and of the cell subsample. Everything but the mesh area and volume and the mean
signed distance (float sums in another order: last bits) equals ``measure_crop`` on the whole box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stainfree.execute.quantify_tasks import field_of, record_path, save_record
from stainfree.execute.records import local_dask
from stainfree.quantify.blockobjects import mesh_part, owned, padding, sample_ranks, smoothed

Region = tuple[slice, ...]


def _box(m: Any, gid: int) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(m.lo[gid], dtype=np.int64), np.asarray(m.hi[gid], dtype=np.int64)


def _part(core: Region, lo: np.ndarray, hi: np.ndarray) -> Region | None:
    sl = tuple(slice(max(c.start, int(a)), min(c.stop, int(b))) for c, a, b in zip(core, lo, hi, strict=True))
    return sl if all(s.start < s.stop for s in sl) else None


@local_dask
def parts_task(job: dict[str, Any], index: int) -> int:
    """The parts of the large objects ``job["items"][index] = (block, gids)`` in that block."""
    from stainfree.quantify.measure import marginals

    f = field_of(job)
    m = f.merged("structures")
    block, gids = job["items"][index]
    core = f.grid.region(block)
    sigma = float(job["sigma"])
    out = {}
    for gid in gids:
        s = int(m.channel[gid])
        lo, hi = _box(m, gid)
        sl = _part(core, lo, hi)
        rec: dict[str, Any] = {"n": 0}
        if sl is not None:
            crop = f.labels("structures", s, sl) == gid
            marg1, m2 = marginals(crop)
            rec.update(n=int(crop.sum()), at=[a.start - int(b) for a, b in zip(sl, lo, strict=True)])
            rec.update(marg1=marg1, m2=m2)
            if job.get("split") is not None:
                if int(m.count[gid]) > int(job["cell_sample"]):
                    rec["rows"] = crop.sum(axis=-1, dtype=np.int64)
                else:
                    rec["cells"] = np.bincount(f.cells(sl)[crop].astype(np.int64))
            if job["nucleus"] and crop.any():
                signed = f.signed(sl, crop)
                rec["dist_min"] = float(np.min(signed, where=crop, initial=np.inf))
                rec["signed_sum"] = float(
                    np.bincount(np.zeros(int(crop.sum()), np.intp), weights=signed[crop])[0]
                )
        if f.shape[0] > 1 and sigma > 0:
            pad = padding(sigma)
            mine = owned(core, f.shape, lo - pad, hi + pad, cubes=False)
            if mine is not None:
                values = smoothed(
                    lambda w, s=s, g=gid: f.labels("structures", s, w) == g, mine, f.shape, sigma, True
                )
                rec["smooth_max"] = float(values.max())
        out[int(gid)] = rec
    save_record(record_path(f.work, job["stage"], index), out)
    return index


@local_dask
def mesh_task(job: dict[str, Any], index: int) -> int:
    """The mesh part (cubes held by the block) and cell-subsample part of large objects in one block."""
    f = field_of(job)
    m = f.merged("structures")
    block, gids = job["items"][index]
    core = f.grid.region(block)
    sigma = float(job["sigma"])
    out = {}
    for gid in gids:
        s = int(m.channel[gid])
        lo, hi = _box(m, gid)
        rec: dict[str, Any] = {}
        if f.shape[0] > 1:
            pad = padding(sigma)
            cubes = owned(core, f.shape, lo - pad, hi + pad, cubes=True)
            if cubes is not None:
                region = tuple(slice(c.start, c.stop + 1) for c in cubes)
                smooth = bool(job["smooth"].get(int(gid), False))
                values = smoothed(
                    lambda w, s=s, g=gid: f.labels("structures", s, w) == g, region, f.shape, sigma, smooth
                )
                offset = np.array([c.start for c in cubes]) - (lo - pad)
                rec["mesh"] = mesh_part(values, offset, f.spacing)
        ranks = Path(job["work"]) / "ranks" / f"{gid}_{block}.npy"
        sl = _part(core, lo, hi)
        if sl is not None and ranks.is_file():
            crop = f.labels("structures", s, sl) == gid
            step = int(m.count[gid]) // int(job["cell_sample"])
            pick = sample_ranks(crop, np.load(ranks), step)
            rec["cells"] = np.bincount(f.cells(sl)[pick].astype(np.int64))
        out[int(gid)] = rec
    save_record(record_path(f.work, job["stage"], index), out)
    return index


# ----- on the client ------------------------------------------------------------------------------------


def large_items(objs: Any, grid: Any, large: set[int]) -> list[tuple[int, list[int]]]:
    """(block, large objects whose box it meets) for every block meeting one (a padding's reach included)."""
    per_block: dict[int, list[int]] = {}
    for gid in sorted(large):
        lo, hi = _box(objs, gid)
        pad = 8  # >= padding(sigma) for the mesh's cubes beyond the box: blocks without a part return nothing
        region = tuple(
            slice(max(int(a) - pad, 0), min(int(b) + pad, n))
            for a, b, n in zip(lo, hi, grid.shape, strict=True)
        )
        for b in grid.blocks_in(region):
            per_block.setdefault(b, []).append(gid)
    return sorted(per_block.items())


def measure_large(
    runner: Any, job: dict[str, Any], objs: Any, large: set[int], grid: Any
) -> dict[int, dict[str, float]]:
    """Rows of the large objects (as ``objects_task`` returns them) from their parts."""
    from stainfree.quantify.blockobjects import padding as pad_of
    from stainfree.quantify.measure import cell_majority, moments_from_marginals, object_values

    items = large_items(objs, grid, large)
    job = {**job, "items": items}
    if pad_of(float(job["sigma"])) > 8:
        from stainfree.errors import InputError

        raise InputError("surface_smoothing_voxels", "at most 2.3 voxels for objects measured by parts")
    parts = runner.stage(job, "large-parts", len(items), parts_task, "large objects")
    shape = tuple(grid.shape)
    per: dict[int, list[tuple[int, dict[str, Any]]]] = {g: [] for g in large}
    for (block, _), rec in zip(items, parts, strict=True):
        for gid, r in rec.items():
            per[gid].append((block, r))
    smooth, sample_cells = {}, set()
    n_xb = grid.counts[-1]
    for gid, recs in per.items():
        smooth[gid] = max((r.get("smooth_max", -np.inf) for _, r in recs), default=-np.inf) > 0.5
        if any("rows" in r for _, r in recs):
            sample_cells.add(gid)
            _write_ranks(Path(job["work"]), gid, recs, objs, grid, n_xb)
    meshes = runner.stage(
        {**job, "smooth": smooth}, "large-mesh", len(items), mesh_task, "large objects: mesh"
    )
    mesh_recs: dict[int, list[dict[str, Any]]] = {g: [] for g in large}
    for rec in meshes:
        for gid, r in rec.items():
            mesh_recs[gid].append(r)
    spacing = np.asarray(job["spacing"], dtype=np.float64)
    cell_base = np.asarray(job["cell_base"], dtype=np.int64)
    rows = {}
    for gid in sorted(large):
        lo, hi = _box(objs, gid)
        ext = hi - lo
        marg1 = [np.zeros(int(e), dtype=np.int64) for e in ext]
        m2 = {
            (i, j): np.zeros((int(ext[i]), int(ext[j])), dtype=np.int64)
            for i in range(3)
            for j in range(i + 1, 3)
        }
        cells = np.zeros(1, dtype=np.int64)
        dist_min, signed_sum = np.inf, 0.0
        for _, r in per[gid]:
            if not r["n"]:
                continue
            at = r["at"]
            for i in range(3):
                marg1[i][at[i] : at[i] + r["marg1"][i].size] += r["marg1"][i]
            for (i, j), a in r["m2"].items():
                m2[(i, j)][at[i] : at[i] + a.shape[0], at[j] : at[j] + a.shape[1]] += a
            if "cells" in r:
                cells = _add(cells, r["cells"])
            dist_min = min(dist_min, r.get("dist_min", np.inf))
            signed_sum += r.get("signed_sum", 0.0)
        n = int(objs.count[gid])
        centroid, cov = moments_from_marginals(marg1, m2, lo.tolist(), spacing, n)
        cid = None
        if job.get("split") is not None:
            if gid in sample_cells:
                for r in mesh_recs[gid]:
                    if "cells" in r:
                        cells = _add(cells, r["cells"])
            cid = int(cells.argmax()) if cells.sum() else cell_majority(np.zeros(0))
        mesh = None
        if shape[0] > 1:
            found = [r["mesh"] for r in mesh_recs[gid] if "mesh" in r and r["mesh"][2]]
            area = sum(a for a, _, _ in found) if found else np.nan
            mesh = (float(area), abs(sum(v for _, v, _ in found)) if found else np.nan)
        values = object_values(
            centroid, cov, int(lo[0]), spacing, cid=cid, cell_base=cell_base,
            field_base=int(job["field_base"]), flat3d=shape[0] > 1, mesh=mesh,
        )  # fmt: skip
        if job["nucleus"]:
            values["nucleus_distance_um"] = max(float(dist_min), 0.0)
            values["signed_sum"] = signed_sum
        rows[gid] = values
    return rows


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = max(a.size, b.size)
    return np.pad(a, (0, n - a.size)) + np.pad(b, (0, n - b.size))


def _write_ranks(
    work: Path, gid: int, recs: list[tuple[int, dict[str, Any]]], objs: Any, grid: Any, n_xb: int
) -> None:
    """Object voxels before each row part (z, y, x-block) in raster order, saved per block (``mesh_task``)."""
    lo, hi = _box(objs, gid)
    zy = (int(hi[0] - lo[0]), int(hi[1] - lo[1]))
    counts = np.zeros((*zy, n_xb), dtype=np.int64)
    where = {}
    for block, r in recs:
        if "rows" not in r:
            continue
        xb = int(np.unravel_index(block, grid.counts)[-1])
        z0, y0 = r["at"][0], r["at"][1]
        rows = r["rows"]
        counts[z0 : z0 + rows.shape[0], y0 : y0 + rows.shape[1], xb] += rows
        where[block] = (z0, y0, rows.shape, xb)
    before = (np.cumsum(counts.ravel()) - counts.ravel()).reshape(counts.shape)
    (work / "ranks").mkdir(exist_ok=True)
    for block, (z0, y0, rshape, xb) in where.items():
        np.save(work / "ranks" / f"{gid}_{block}.npy", before[z0 : z0 + rshape[0], y0 : y0 + rshape[1], xb])
