"""In-silico multi-colour images: a compartment's mask times the Nile Red intensity, one named channel each.

Pure numpy. The paper's "in-silico labeling" of nine or fifteen compartments from one dye is the segmentation
masks multiplied by the Nile Red intensity (Zhanghao et al., Fig. 6): channel ``c`` of the multi-colour
image is ``mask_c * intensity`` voxel by voxel, named by the compartment. Measured channels (a microtubule
label, say) ride along as extra channels. :func:`composite_rgb` mixes the channels into one RGB picture in the
catalog colours (one z plane, or the maximum projection over z, for 3D). A measured channel can also become
a structure of its own for the object and contact tables (:func:`otsu_structure`,
:class:`ExtraStructureSource`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from stainfree.errors import InputError
from stainfree.quantify.inputs import MaskSource
from stainfree.quantify.maps import ObjectMap, build_object_map

__all__ = [
    "COMPOSITE_WEIGHTS",
    "EXTRA_COLORS",
    "PLANE_IGNORED",
    "ExtraStructureSource",
    "best_plane",
    "channel_limits",
    "composite_rgb",
    "frame_masks",
    "multicolor_channels",
    "otsu_structure",
]

#: Weight of a compartment in the RGB composite (others 1): the cytosol fills the cell and would wash out the
#: organelles; the extracellular space is the background.
COMPOSITE_WEIGHTS: dict[str, float] = {"cytosol": 0.25, "extracellular": 0.0}

#: Compartments that do not choose the composite's z plane (they fill or wrap the cell, or lie outside it).
PLANE_IGNORED: tuple[str, ...] = ("cytosol", "extracellular", "plasma_membrane", "filopodia")

#: Colours (RGB 0-255) of extra (measured) channels in the composite, in order; none is a catalog colour.
EXTRA_COLORS: tuple[tuple[int, int, int], ...] = ((255, 255, 255), (255, 60, 120), (120, 120, 255))


def frame_masks(source: MaskSource, frame: int, structures: Sequence[str] | None = None) -> np.ndarray:
    """Boolean masks ``(C, [Z,] Y, X)`` of one frame of a mask source, one per structure (``source.names``
    order, or ``structures``).

    A label map gives ``labels == i``; a mask stack ``> 0.5`` (float) or ``> 0`` (integer); an instance stack
    ``> 0``.
    """
    names = list(source.names) if structures is None else list(structures)
    unknown = [s for s in names if s not in source.names]
    if unknown:
        raise InputError(source.source, f"unknown structure(s) {unknown}; the input has {list(source.names)}")
    data = np.asarray(source.array[frame])
    index = {n: i for i, n in enumerate(source.names)}
    if source.kind == "labels":
        return np.stack([data == index[s] + 1 for s in names])
    thresh = 0.5 if np.issubdtype(data.dtype, np.floating) else 0
    return np.stack([data[index[s]] > thresh for s in names])


def multicolor_channels(
    masks: np.ndarray, intensity: np.ndarray | None, extras: np.ndarray | None = None
) -> np.ndarray:
    """The multi-colour image of one frame: ``mask_c * intensity`` per compartment, then the extra channels.

    Parameters
    ----------
    masks : (C, [Z,] Y, X) bool
        One mask per compartment.
    intensity : ([Z,] Y, X) float, optional
        The Nile Red intensity; None gives the masks as 0/1 channels.
    extras : (E, [Z,] Y, X), optional
        Measured channels appended unchanged.

    Returns
    -------
    (C + E, [Z,] Y, X) float32
    """
    m = np.asarray(masks, bool)
    if intensity is None:
        out = m.astype(np.float32)
    else:
        inten = np.asarray(intensity, np.float32)
        if inten.shape != m.shape[1:]:
            raise InputError("intensity", f"shape {inten.shape} does not match the masks' {m.shape[1:]}")
        out = np.where(m, inten[None], np.float32(0))
    if extras is not None and len(extras):
        ex = np.asarray(extras, np.float32)
        if ex.shape[1:] != m.shape[1:]:
            raise InputError("extra channel", f"shape {ex.shape[1:]} does not match the masks' {m.shape[1:]}")
        out = np.concatenate([out, ex])
    return out


def _project(channels: np.ndarray, spatial_ndim: int, plane: int | None = None) -> np.ndarray:
    """(C, Y, X): plane ``plane`` of (C, Z, Y, X), or the maximum over z when None; 2D unchanged."""
    c = np.asarray(channels, np.float32)
    if spatial_ndim != 3:
        return c
    return c[:, plane] if plane is not None else c.max(axis=1)


def best_plane(channels: np.ndarray, weights: Sequence[float]) -> int:
    """The z plane of a (C, Z, Y, X) image with the most covered voxels, channel counts times ``weights`` (the
    cells' busiest section)."""
    c = np.asarray(channels)
    w = np.asarray(weights, np.float64)
    per_plane = np.einsum("cz,c->z", (c != 0).sum(axis=(2, 3)).astype(np.float64), w)
    return int(np.argmax(per_plane))


def channel_limits(
    channels: np.ndarray, spatial_ndim: int, percentile: float = 99.5, plane: int | None = None
) -> np.ndarray:
    """Display maximum of each channel: the ``percentile`` of its positive values in the shown plane (or
    maximum projection) (1 if none).

    ``channels`` is ``(C, spatial)`` or ``(T, C, spatial)`` (one limit per channel over all frames, so a movie
    keeps its brightness scale).
    """
    c = np.asarray(channels, np.float32)
    if c.ndim == spatial_ndim + 1:
        c = c[None]
    proj = np.stack([_project(f, spatial_ndim, plane) for f in c])  # (T, C, Y, X)
    out = np.ones(proj.shape[1], np.float32)
    for i in range(proj.shape[1]):
        v = proj[:, i][proj[:, i] > 0]
        if v.size:
            out[i] = max(float(np.percentile(v, percentile)), 1e-12)
    return out


def composite_rgb(
    channels: np.ndarray,
    colors: Sequence[tuple[int, int, int]],
    *,
    weights: Sequence[float] | None = None,
    limits: Sequence[float] | np.ndarray | None = None,
    floors: Sequence[float] | np.ndarray | None = None,
    spatial_ndim: int | None = None,
    plane: int | None = None,
) -> np.ndarray:
    """Additive RGB composite of a multi-colour image: each channel's plane (or projection), scaled to 0..1
    between its floor and limit, times its colour and weight, summed and clipped.

    Parameters
    ----------
    channels : (C, [Z,] Y, X)
        The channels of one frame (3D is projected by its maximum over z).
    colors : C tuples (r, g, b) in 0..255
    weights : C floats, optional (default 1)
    limits : C floats, optional
        Display maxima (default :func:`channel_limits` of this frame).
    floors : C floats, optional
        Display minima (default 0; a measured channel's background level, say).
    spatial_ndim : 2 or 3, optional
        Number of spatial axes (default ``channels.ndim - 1``).
    plane : int, optional
        The z plane shown for 3D channels (default: the maximum projection).

    Returns
    -------
    (Y, X, 3) uint8
    """
    c = np.asarray(channels, np.float32)
    nd = spatial_ndim if spatial_ndim is not None else c.ndim - 1
    if len(colors) != c.shape[0]:
        raise InputError("composite", f"{c.shape[0]} channels but {len(colors)} colours")
    proj = _project(c, nd, plane)
    lim = np.asarray(limits if limits is not None else channel_limits(c, nd, plane=plane), np.float32)
    lo = np.asarray(floors if floors is not None else np.zeros(c.shape[0]), np.float32)
    w = np.asarray(weights if weights is not None else np.ones(c.shape[0]), np.float32)
    col = np.asarray(colors, np.float32) / 255.0  # (C, 3)
    span = np.maximum(lim - lo, 1e-12)
    scaled = np.clip((proj - lo[:, None, None]) / span[:, None, None], 0, 1) * w[:, None, None]
    rgb = np.einsum("cyx,ck->yxk", scaled, col)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def otsu_structure(image: np.ndarray, spatial_ndim: int) -> np.ndarray:
    """A measured channel turned into a structure: ``image > Otsu threshold``, frame by frame.

    ``image`` is ``(spatial)`` or ``(T, spatial)``; returns a bool array of the same shape (all False for a
    constant frame).
    """
    from skimage.filters import threshold_otsu

    a = np.asarray(image, np.float32)
    frames = a[None] if a.ndim == spatial_ndim else a
    out = np.zeros(frames.shape, bool)
    for t, f in enumerate(frames):
        if float(f.max()) > float(f.min()):
            out[t] = f > threshold_otsu(f)
    return out if a.ndim > spatial_ndim else out[0]


@dataclass
class ExtraStructureSource(MaskSource):
    """A :class:`MaskSource` plus structures given as boolean masks per frame (``(T, spatial)`` each), e.g.
    measured channels thresholded by :func:`otsu_structure`. They are listed after the source's own names."""

    extra_masks: Mapping[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def wrap(cls, source: MaskSource, extra_masks: Mapping[str, np.ndarray]) -> ExtraStructureSource:
        """``source`` with the named extra structures (names must be new, shapes those of the frames)."""
        clash = [n for n in extra_masks if n in source.names]
        if clash:
            raise InputError("extra channel", f"name(s) {clash} already name a structure of the masks")
        out: dict[str, np.ndarray] = {}
        for name, m in extra_masks.items():
            a = np.asarray(m, bool)
            if a.shape == source.spatial_shape:
                a = np.broadcast_to(a, (source.n_frames, *a.shape))
            if a.shape[1:] != source.spatial_shape or a.shape[0] not in (1, source.n_frames):
                raise InputError(
                    name, f"shape {a.shape} does not match the masks' frames {source.spatial_shape}"
                )
            out[name] = a
        return cls(
            kind=source.kind,
            array=source.array,
            names=tuple(source.names),
            voxel_size_um=source.voxel_size_um,
            source=source.source,
            extras=dict(source.extras),
            extra_masks=out,
        )

    def object_map(
        self,
        frame: int,
        *,
        connectivity: int = 3,
        min_size: int = 10,
        structures: Sequence[str] | None = None,
    ) -> ObjectMap:
        """Objects of one frame: the source's structures and the extra ones (all by default)."""
        from scipy import ndimage as ndi

        own = list(self.names) if structures is None else [s for s in structures if s in self.names]
        extra = (
            list(self.extra_masks) if structures is None else [s for s in structures if s in self.extra_masks]
        )
        unknown = [s for s in structures or () if s not in self.names and s not in self.extra_masks]
        if unknown:
            raise InputError(self.source, f"unknown structure(s) {unknown}")

        def extra_mask(name: str) -> np.ndarray:
            m = self.extra_masks[name]
            return np.asarray(m[frame if m.shape[0] > 1 else 0])

        if self.kind == "instances":
            data = np.asarray(self.array[frame])
            index = {n: i for i, n in enumerate(self.names)}
            maps: dict[str, np.ndarray] = {s: data[index[s]] for s in own}
            structure = ndi.generate_binary_structure(len(self.spatial_shape), connectivity)
            for s in extra:
                maps[s] = ndi.label(extra_mask(s), structure=structure)[0]
            return build_object_map(maps, instances=True, connectivity=connectivity, min_size=min_size)
        masks = dict(zip(own, frame_masks(self, frame, own), strict=True)) if own else {}
        for s in extra:
            masks[s] = extra_mask(s)
        return build_object_map(masks, connectivity=connectivity, min_size=min_size)
