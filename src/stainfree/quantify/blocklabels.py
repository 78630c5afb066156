"""Connected components and contact sums of one large field, block by block; pure numpy/scipy.

The pieces the block engine (:mod:`stainfree.execute.quantify_blocks`) runs on its workers and its client so
that objects, cells and contacts equal those of :func:`stainfree.quantify.maps.build_object_map`,
:func:`~stainfree.quantify.maps.derive_cells` and :func:`~stainfree.quantify.contacts.measure_contacts` on
the whole field:

* :class:`BlockGrid`: the field cut into blocks (C-order block numbers);
* :func:`label_block`: components of each mask channel on one block (scipy's ``label``, the connectivity of
  the in-memory path) with voxel count, first voxel (global raster index) and bounding box of each;
* :func:`boundary_pairs`: the components that touch across one block boundary (every voxel pair the
  structuring element links, diagonals included);
* :func:`merge_components`: union-find over those pairs, the size filter on the merged counts and the
  in-memory numbering: channel by channel, objects ordered by their first voxel in raster order (the order of
  ``scipy.ndimage.label``), so every object gets the global id it has in the whole-field ``ObjectMap``;
* :func:`contact_partials`: the integer sums of one block (with a one-voxel halo) from which the contact
  tables follow exactly.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "BlockGrid",
    "Merged",
    "boundary_pairs",
    "contact_partials",
    "label_block",
    "merge_components",
]

Region = tuple[slice, ...]


@dataclass(frozen=True)
class BlockGrid:
    """A field of ``shape`` cut into blocks of ``block`` voxels (the last ones smaller)."""

    shape: tuple[int, ...]
    block: tuple[int, ...]

    @classmethod
    def plan(
        cls, shape: tuple[int, ...], block_voxels: int | None, chunks: tuple[int, ...] | None = None
    ) -> BlockGrid:
        """Blocks of at most ``block_voxels`` (the longest axis halved until they fit), or ``chunks`` (e.g.
        the store's chunks) when no size is given, else the whole field."""
        shape = tuple(int(s) for s in shape)
        if block_voxels is None:
            block = tuple(int(c) for c in chunks) if chunks is not None else shape
            return cls(shape, tuple(min(b, s) for b, s in zip(block, shape, strict=True)))
        block_list = list(shape)
        while math.prod(block_list) > max(int(block_voxels), 1) and max(block_list) > 1:
            k = int(np.argmax(block_list))
            block_list[k] = (block_list[k] + 1) // 2
        return cls(shape, tuple(block_list))

    @property
    def counts(self) -> tuple[int, ...]:
        """Blocks along each axis."""
        return tuple(-(-s // b) for s, b in zip(self.shape, self.block, strict=True))

    def __len__(self) -> int:
        return math.prod(self.counts)

    def region(self, index: int) -> Region:
        """The voxels of block ``index``."""
        pos = np.unravel_index(index, self.counts)
        return tuple(
            slice(int(p) * b, min((int(p) + 1) * b, s))
            for p, b, s in zip(pos, self.block, self.shape, strict=True)
        )

    def blocks_in(self, region: Region) -> list[int]:
        """Blocks intersecting ``region`` (slices with start and stop)."""
        ranges = [range(r.start // b, -(-r.stop // b)) for r, b in zip(region, self.block, strict=True)]
        return [int(np.ravel_multi_index(p, self.counts)) for p in itertools.product(*ranges)]

    def block_ids(self, region: Region) -> np.ndarray:
        """Block number of every voxel of ``region``."""
        grids = np.ix_(*[np.arange(r.start, r.stop) // b for r, b in zip(region, self.block, strict=True)])
        out = np.zeros(tuple(r.stop - r.start for r in region), dtype=np.int64)
        for k, g in enumerate(grids):
            out += g * int(math.prod(self.counts[k + 1 :]))
        return out

    def boundaries(self) -> list[tuple[int, int, Region]]:
        """Every internal block boundary as ``(axis, first plane after it, tile of the other axes)``."""
        out: list[tuple[int, int, Region]] = []
        for axis, (s, b) in enumerate(zip(self.shape, self.block, strict=True)):
            others = [k for k in range(len(self.shape)) if k != axis]
            tiles = itertools.product(*[range(0, self.shape[k], self.block[k]) for k in others])
            for start in tiles:
                tile = tuple(
                    slice(a, min(a + self.block[k], self.shape[k]))
                    for a, k in zip(start, others, strict=True)
                )
                out.extend((axis, p, tile) for p in range(b, s, b))
        return out


def clip_region(region: Region, grow: int | tuple[int, ...], shape: tuple[int, ...]) -> Region:
    """``region`` grown by ``grow`` voxels on every side (per axis), clipped to ``shape``."""
    g = (grow,) * len(shape) if isinstance(grow, int) else grow
    return tuple(
        slice(max(r.start - k, 0), min(r.stop + k, s)) for r, k, s in zip(region, g, shape, strict=True)
    )


def label_block(
    masks: np.ndarray, region: Region, shape: tuple[int, ...], structure: np.ndarray
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Components of every channel of ``masks`` (C, *block) on block ``region`` of a field of ``shape``.

    Returns
    -------
    labels : ndarray of int32
        Local component ids 1..n per channel.
    parts : list of dict
        Per channel: ``count`` (voxels), ``first`` (global raster index of the first voxel), ``lo``/``hi``
        (bounding box, global) of components 1..n.
    """
    labels = np.zeros(masks.shape, dtype=np.int32)
    parts = []
    offset = np.array([r.start for r in region], dtype=np.int64)
    for c in range(masks.shape[0]):
        lab, n = ndi.label(masks[c], structure=structure)
        labels[c] = lab
        flat = lab.ravel()
        counts = np.bincount(flat, minlength=n + 1)[1:].astype(np.int64)
        ids, first_local = np.unique(flat, return_index=True)
        first_local = first_local[ids > 0]
        coords = np.stack(np.unravel_index(first_local, lab.shape), axis=1) + offset
        first = np.ravel_multi_index(tuple(coords.T), shape).astype(np.int64) if n else np.zeros(0, np.int64)
        boxes = ndi.find_objects(lab)
        lo = np.array([[s.start for s in b] for b in boxes], dtype=np.int64).reshape(n, lab.ndim) + offset
        hi = np.array([[s.stop for s in b] for b in boxes], dtype=np.int64).reshape(n, lab.ndim) + offset
        parts.append({"count": counts, "first": first, "lo": lo, "hi": hi})
    return labels, parts


def boundary_pairs(
    lo_plane: np.ndarray, hi_plane: np.ndarray, structure: np.ndarray, axis: int
) -> np.ndarray:
    """Node pairs linked across one boundary: ``lo_plane`` the node ids of the last plane before it on a tile,
    ``hi_plane`` those of the first plane after it on the tile grown by one voxel (zero-padded where the
    field ends). Returns unique (k, 2) pairs."""
    cross = np.take(structure, 2, axis=axis)  # the offsets reaching the next plane
    found = []
    tile = lo_plane.shape
    for offset in zip(*np.nonzero(cross), strict=True):
        view = hi_plane[tuple(slice(o, o + n) for o, n in zip(offset, tile, strict=True))]
        m = (lo_plane > 0) & (view > 0)
        if m.any():
            found.append(np.stack([lo_plane[m], view[m]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


@dataclass
class Merged:
    """Merged components of one labelling: per (channel, block) the map local id -> global id (0 = dropped)
    and per global id (entry 0 = none) its channel, rank within the channel, voxel count, first voxel and
    bounding box."""

    luts: dict[tuple[int, int], np.ndarray]
    channel: np.ndarray
    rank: np.ndarray
    count: np.ndarray
    first: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def n(self) -> int:
        return int(self.channel.size - 1)


def node_offsets(parts: dict[int, list[dict[str, np.ndarray]]], n_blocks: int, n_channels: int) -> np.ndarray:
    """Node id of local component 0 of every (channel, block): ids are 1-based and unique over the field."""
    sizes = np.array(
        [[parts[b][c]["count"].size for b in range(n_blocks)] for c in range(n_channels)], dtype=np.int64
    )
    return (np.cumsum(sizes.ravel()) - sizes.ravel()).reshape(sizes.shape)


def merge_components(
    parts: dict[int, list[dict[str, np.ndarray]]], pairs: list[np.ndarray], n_channels: int, min_size: int
) -> Merged:
    """Union-find over the boundary ``pairs`` of the components of every block (:func:`label_block`), the
    size filter (``count >= min_size``) and the in-memory numbering (channel, then first voxel)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_blocks = len(parts)
    offsets = node_offsets(parts, n_blocks, n_channels)
    cat = {
        k: np.concatenate([parts[b][c][k] for c in range(n_channels) for b in range(n_blocks)])
        for k in ("count", "first", "lo", "hi")
    }
    ndim = int(cat["lo"].shape[1])
    chan = np.concatenate(
        [np.full(parts[b][c]["count"].size, c) for c in range(n_channels) for b in range(n_blocks)]
    ).astype(np.int64)
    n_nodes = int(chan.size)
    edges = np.concatenate(pairs) - 1 if pairs else np.zeros((0, 2), dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_nodes, n_nodes))
    _, comp = connected_components(graph, directed=False)
    n_comp = int(comp.max()) + 1 if n_nodes else 0
    count = np.zeros(n_comp, dtype=np.int64)
    np.add.at(count, comp, cat["count"])
    first = np.full(n_comp, np.iinfo(np.int64).max)
    np.minimum.at(first, comp, cat["first"])
    lo = np.full((n_comp, ndim), np.iinfo(np.int64).max)
    hi = np.zeros((n_comp, ndim), dtype=np.int64)
    if n_nodes:
        np.minimum.at(lo, comp, cat["lo"])
        np.maximum.at(hi, comp, cat["hi"])
    comp_chan = np.zeros(n_comp, dtype=np.int64)
    comp_chan[comp] = chan
    keep = count >= max(int(min_size), 1)
    order = np.lexsort((first, comp_chan))  # channel, then first voxel
    order = order[keep[order]]
    gid = np.zeros(n_comp, dtype=np.int64)
    gid[order] = np.arange(1, order.size + 1)
    rank = np.zeros(order.size + 1, dtype=np.int64)
    chans = comp_chan[order]
    for c in range(n_channels):
        sel = np.flatnonzero(chans == c)
        rank[sel + 1] = np.arange(1, sel.size + 1)
    node_gid = gid[comp]
    luts = {}
    for c in range(n_channels):
        for b in range(n_blocks):
            k = parts[b][c]["count"].size
            luts[(c, b)] = np.concatenate([[0], node_gid[offsets[c, b] : offsets[c, b] + k]]).astype(np.int32)

    def pad(a: np.ndarray, fill: Any) -> np.ndarray:
        return np.concatenate([np.full((1, *a.shape[1:]), fill, dtype=a.dtype), a])

    return Merged(
        luts=luts,
        channel=pad(chans, -1),
        rank=rank,
        count=pad(count[order], 0),
        first=pad(first[order], -1),
        lo=pad(lo[order], 0),
        hi=pad(hi[order], 0),
    )


def contact_partials(
    layers: list[np.ndarray],
    core: Region,
    origin: tuple[int, ...],
    shape: tuple[int, ...],
    struct_of: np.ndarray,
    n_s: int,
) -> dict[str, Any]:
    """The integer sums behind the contact tables (adjacency mode) of one block.

    ``layers`` are the object-map layers on the block grown by one voxel (``origin`` its first voxel in the
    field of ``shape``), ``core`` the block within it. Every face pair is counted by the block holding its
    lower voxel and every voxel by its own block, so the sums over blocks are those of the whole field.

    Returns
    -------
    dict
        ``faces`` (n_s, n_s, ndim): contact faces per ordered structure pair and axis (both directions);
        ``voxels`` (n_s * n_s): distinct contact voxels per ordered pair; ``exposed`` (n_layers, ndim, n_s):
        exposed faces; ``pairs``: object pair code -> faces per axis (zero for overlaps only).
    """
    ndim = len(shape)
    lut = struct_of.astype(np.int64)
    n_obj = int(struct_of.size)
    wshape = layers[0].shape
    inside = np.zeros(wshape, dtype=bool)
    inside[core] = True
    faces = np.zeros((n_s, n_s, ndim), dtype=np.int64)
    exposed = np.zeros((len(layers), ndim, n_s), dtype=np.int64)
    keys, key_s, key_b = [], [], []
    codes, code_axis = [], []
    for i, li in enumerate(layers):
        for axis in range(ndim):
            lo = tuple(slice(None, -1) if k == axis else slice(None) for k in range(ndim))
            hi = tuple(slice(1, None) if k == axis else slice(None) for k in range(ndim))
            own = inside[lo]
            a, b = li[lo], li[hi]
            diff = (a != b) & own
            exposed[i, axis] += np.bincount(lut[a[diff]] + 1, minlength=n_s + 1)[1:]
            exposed[i, axis] += np.bincount(lut[b[diff]] + 1, minlength=n_s + 1)[1:]
            for end, g in ((0, origin[axis]), (-1, origin[axis] + wshape[axis] - 1)):
                if g == (0 if end == 0 else shape[axis] - 1):
                    plane = np.take(li, end, axis=axis)[np.take(inside, end, axis=axis)]
                    exposed[i, axis] += np.bincount(lut[plane] + 1, minlength=n_s + 1)[1:]
    flat = np.arange(inside.size, dtype=np.int64).reshape(wshape)
    for i, j in itertools.combinations_with_replacement(range(len(layers)), 2):
        li, lj = layers[i], layers[j]
        for axis in range(ndim):
            lo = tuple(slice(None, -1) if k == axis else slice(None) for k in range(ndim))
            hi = tuple(slice(1, None) if k == axis else slice(None) for k in range(ndim))
            combos = [(li, lj, i, j)] if i == j else [(li, lj, i, j), (lj, li, j, i)]
            for la, lb, ia, ib in combos:
                a, b = la[lo], lb[hi]
                m = (a != b) & (a > 0) & (b > 0)
                if not m.any():
                    continue
                ga, gb = a[m].astype(np.int64), b[m].astype(np.int64)
                u, v = flat[lo][m], flat[hi][m]
                own_u, own_v = inside[lo][m], inside[hi][m]
                sa, sb = lut[ga], lut[gb]
                np.add.at(faces, (sa[own_u], sb[own_u], axis), 1)
                np.add.at(faces, (sb[own_u], sa[own_u], axis), 1)
                codes.append(np.minimum(ga, gb)[own_u] * n_obj + np.maximum(ga, gb)[own_u])
                code_axis.append(np.full(int(own_u.sum()), axis))
                keys.extend([u[own_u] * len(layers) + ia, v[own_v] * len(layers) + ib])
                key_s.extend([sa[own_u], sb[own_v]])
                key_b.extend([sb[own_u], sa[own_v]])
        if i != j:  # overlapping voxels: contact voxels, no face
            m = (li > 0) & (lj > 0) & inside
            if m.any():
                ga, gb = li[m].astype(np.int64), lj[m].astype(np.int64)
                u = flat[m]
                codes.append(np.minimum(ga, gb) * n_obj + np.maximum(ga, gb))
                code_axis.append(np.full(ga.size, -1))
                keys.extend([u * len(layers) + i, u * len(layers) + j])
                key_s.extend([lut[ga], lut[gb]])
                key_b.extend([lut[gb], lut[ga]])
    voxels = np.zeros(n_s * n_s, dtype=np.int64)
    if keys:
        k_all = np.concatenate(keys)
        s_all, b_all = np.concatenate(key_s), np.concatenate(key_b)
        _, first = np.unique(k_all * n_s + b_all, return_index=True)
        voxels += np.bincount(s_all[first] * n_s + b_all[first], minlength=n_s * n_s)
    pairs: dict[int, np.ndarray] = {}
    if codes:
        c_all, ax_all = np.concatenate(codes), np.concatenate(code_axis)
        uniq, inv = np.unique(c_all, return_inverse=True)
        per = np.zeros((uniq.size, ndim), dtype=np.int64)
        sel = ax_all >= 0
        np.add.at(per, (inv[sel], ax_all[sel]), 1)
        pairs = {int(c): per[k] for k, c in enumerate(uniq)}
    return {"faces": faces, "voxels": voxels, "exposed": exposed, "pairs": pairs}
