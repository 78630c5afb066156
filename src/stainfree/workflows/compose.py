"""In-silico multi-colour images: segment's masks x the Nile Red intensity, a composite PNG and a movie."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: Output formats of the multi-colour image.
IMAGE_FORMATS: tuple[str, ...] = ("ome-tiff", "ome-zarr", "both")

#: Larger multi-colour stacks are memory-mapped from a temporary file beside the outputs.
IN_MEMORY_BYTES = 512 * 2**20

ExtraChannel = tuple["str | os.PathLike | np.ndarray", str]


def parse_extra_channel(spec: str) -> tuple[str, str]:
    """``"FILE:NAME"`` -> (file, name); without ``:NAME`` the name is the file's stem (before any suffix)."""
    from stainfree.errors import InputError

    path, sep, name = spec.rpartition(":")
    if not sep or not path or "/" in name or "\\" in name:
        path, name = spec, Path(spec).name.split(".")[0]
    name = name.strip()
    if not name:
        raise InputError(spec, "an extra channel needs a name (FILE:NAME)")
    return path, name


def load_extra_channels(
    extra_channels: Sequence[ExtraChannel], n_frames: int, spatial: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Measured channels as ``name -> (T or 1, spatial)`` float32 arrays matching the masks."""
    import numpy as np

    from stainfree.errors import InputError
    from stainfree.quantify.inputs import load_frames_image

    out: dict[str, np.ndarray] = {}
    for value, name in extra_channels:
        if name in out:
            raise InputError(name, "two extra channels share this name")
        if isinstance(value, np.ndarray):
            arr = value[None] if value.shape == spatial else value
            src = f"extra channel {name}"
        else:
            arr, _ = load_frames_image(value, n_frames, spatial)
            src = str(value)
            lead = list(arr.shape[: arr.ndim - len(spatial)])
            while len(lead) > 1 and 1 in lead:  # (1, T, ...) of an axis-less TIFF, or (T, 1, ...)
                lead.remove(1)
            arr = arr.reshape(*lead, *spatial)
        if arr.ndim != len(spatial) + 1 or arr.shape[1:] != spatial or arr.shape[0] not in (1, n_frames):
            raise InputError(src, f"an extra channel must have one channel shaped like the masks {spatial}")
        out[name] = np.asarray(arr, np.float32)
    return out


def _intensity(
    nilered: str | os.PathLike | np.ndarray, n_frames: int, spatial: tuple[int, ...], alignment: Any
) -> tuple[np.ndarray, str]:
    """(T or 1, spatial) Nile Red intensity: (Y + R) / 2 after alignment, or a one-channel image as it is."""
    import numpy as np

    from stainfree.quantify.inputs import load_frames_image
    from stainfree.workflows.quantify import _quantify_nilered

    if isinstance(nilered, np.ndarray):
        # an intensity is (spatial) or (T, spatial) with T > 1 frames; else a Nile Red (T, )C image
        frames = nilered.ndim == len(spatial) + 1 and n_frames > 1 and nilered.shape[0] == n_frames
        if nilered.shape == spatial or frames:
            return np.asarray(nilered, np.float32).reshape(-1, *spatial), "intensity array"
        return _quantify_nilered(nilered, n_frames, spatial, alignment)[0], "(yellow + red) / 2"
    arr, _ = load_frames_image(nilered, n_frames, spatial)
    if arr.ndim == len(spatial) + 1:
        return np.asarray(arr, np.float32), f"{nilered} (one channel, as is)"
    return _quantify_nilered(Path(nilered), n_frames, spatial, alignment)[
        0
    ], f"(yellow + red) / 2 of {nilered}"


def _legend_png(
    path: Path, rgb: np.ndarray, names: Sequence[str], colors: Sequence[tuple[int, int, int]]
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stainfree.io.atomic import atomic_path

    h, w = rgb.shape[:2]
    fig, ax = plt.subplots(figsize=(min(12.0, 2.5 + 6.0 * w / max(h, w)), 6.0 * h / max(h, w) + 0.3))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    handles = [
        plt.Line2D(
            [], [], marker="s", ls="", ms=9, color=(c[0] / 255, c[1] / 255, c[2] / 255), mec="0.5", label=n
        )
        for n, c in zip(names, colors, strict=True)
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def compose(
    masks: str | os.PathLike | np.ndarray,
    out_dir: str | os.PathLike,
    *,
    nilered: str | os.PathLike | np.ndarray | None = None,
    extra_channels: Sequence[ExtraChannel] = (),
    format: str = "ome-tiff",
    movie: str | None = "mp4",
    fps: float = 4.0,
    voxel_size_um: tuple[float, float, float] | None = None,
    names: Sequence[str] | None = None,
    axes: str | None = None,
    kind: str | None = None,
    channel_alignment: str | tuple[float, float, float] = "auto",
    upscale: int | None = None,
) -> dict[str, Path]:
    """Write the in-silico multi-colour image of segmented masks: one channel per compartment (mask x Nile Red
    intensity, named), measured channels alongside, an RGB composite with a legend and, for a time-lapse, a
    movie.

    Parameters
    ----------
    masks : path or ndarray
        ``stainfree segment``'s 15-channel masks (``(T)CZYX``), a label map, an instance stack or a simulator
        field folder (its Nile Red image is used when ``nilered`` is None). A leading T axis is a time-lapse.
    out_dir : path
        Output folder: ``multicolor.ome.tif`` / ``multicolor.ome.zarr``, ``composite.png``, ``movie.mp4`` (or
        ``.gif``), ``compose.json``.
    nilered : path or ndarray, optional
        Nile Red image (yellow, red: intensity (Y + R) / 2 after aligning red onto yellow) or a one-channel
        intensity image. Without one, the channels are the masks as 0/1.
    extra_channels : sequence of (path or ndarray, name)
        Measured channels (e.g. microtubules) carried into the image, the composite and the movie.
    format : {"ome-tiff", "ome-zarr", "both"}
    movie : {"mp4", "gif"} or None
        Movie of a time-lapse (H.264 MP4, GIF when ffmpeg is missing); None writes none.
    fps : float
        Movie frames per second.
    voxel_size_um, names, axes, kind
        As for :func:`stainfree.api.quantify`.
    channel_alignment : "auto", "none" or (z, y, x)
        Shift of red onto yellow before the intensity.
    upscale : int, optional
        Integer zoom of the composite and movie frames (default: up to about 512 pixels).

    Returns
    -------
    dict of str -> Path
        ``image`` (and ``zarr``), ``composite``, ``movie`` (time-lapse only), ``json``.
    """
    import numpy as np

    from stainfree.errors import InputError
    from stainfree.inference.segment import COMPARTMENT_COLORS
    from stainfree.io.movie import MOVIE_FORMATS
    from stainfree.lock import output_lock
    from stainfree.quantify.compose import (
        COMPOSITE_WEIGHTS,
        EXTRA_COLORS,
        frame_masks,
        multicolor_channels,
    )
    from stainfree.quantify.inputs import load_masks

    if format not in IMAGE_FORMATS:
        raise InputError("--format", f"unknown format {format!r}; use one of {IMAGE_FORMATS}")
    if movie is not None and movie not in MOVIE_FORMATS:
        raise InputError("--movie", f"unknown movie format {movie!r}; use one of {MOVIE_FORMATS}")
    out = Path(out_dir)
    source = load_masks(masks, axes=axes, names=names, kind=kind)
    n_t, spatial = source.n_frames, source.spatial_shape
    if nilered is None and "nilered" in source.extras:
        nilered = source.extras["nilered"]
    intensity, inten_note = (
        (None, "none: masks as 0/1")
        if nilered is None
        else _intensity(nilered, n_t, spatial, channel_alignment)
    )
    extras = load_extra_channels(extra_channels, n_t, spatial)
    clash = [n for n in extras if n in source.names]
    if clash:
        raise InputError("extra channel", f"name(s) {clash} already name a compartment")
    channel_names = [*source.names, *extras]
    colors = [COMPARTMENT_COLORS.get(n, (200, 200, 200)) for n in source.names]
    colors += [EXTRA_COLORS[i % len(EXTRA_COLORS)] for i in range(len(extras))]
    weights = [COMPOSITE_WEIGHTS.get(n, 1.0) for n in source.names] + [1.0] * len(extras)

    paths: dict[str, Path] = {}
    with output_lock(out), ExitStack() as cleanup:
        image = _stack(out, (n_t, len(channel_names), *spatial), cleanup)  # (T, C, spatial)
        for t in range(n_t):
            inten_t = None if intensity is None else intensity[t if intensity.shape[0] > 1 else 0]
            ex_t = np.stack([a[t if a.shape[0] > 1 else 0] for a in extras.values()]) if extras else None
            image[t] = multicolor_channels(frame_masks(source, t), inten_t, ex_t)
        _write_outputs(
            out,
            image,
            source,
            extras,
            channel_names,
            colors,
            weights,
            format,
            movie,
            fps,
            voxel_size_um,
            upscale,
            inten_note,
            paths,
        )
    return paths


def _stack(out: Path, shape: tuple[int, ...], cleanup: ExitStack) -> np.ndarray:
    """The float32 multi-colour stack: in memory up to :data:`IN_MEMORY_BYTES`, else a memory-mapped file
    beside the outputs (a hidden partial, removed at the end), so long time-lapses stay within bounded RAM."""
    import numpy as np

    from stainfree.atomic import PARTIAL_SUFFIX

    if int(np.prod(shape)) * 4 <= IN_MEMORY_BYTES:
        return np.zeros(shape, np.float32)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f".multicolor-stack.npy{PARTIAL_SUFFIX}"
    cleanup.callback(lambda: path.unlink(missing_ok=True))
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)


def _write_outputs(
    out: Path,
    image: np.ndarray,
    source: Any,
    extras: dict[str, np.ndarray],
    channel_names: list[str],
    colors: list[tuple[int, int, int]],
    weights: list[float],
    format: str,
    movie: str | None,
    fps: float,
    voxel_size_um: tuple[float, float, float] | None,
    upscale: int | None,
    inten_note: str,
    paths: dict[str, Path],
) -> None:
    """The image file(s), composite, movie and compose.json of a filled stack."""
    import numpy as np

    from stainfree.io.movie import write_movie
    from stainfree.io.writers import write_json, write_ome_tiff, write_ome_zarr
    from stainfree.quantify.compose import PLANE_IGNORED, best_plane, channel_limits, composite_rgb

    n_t, spatial = image.shape[0], tuple(image.shape[2:])
    nd = len(spatial)
    vox = voxel_size_um or tuple(1.0 if v is None else float(v) for v in source.voxel_size_um)
    axes_out = ("T" if n_t > 1 else "") + "C" + ("ZYX" if nd == 3 else "YX")
    data = image if n_t > 1 else image[0]
    vox3 = tuple(vox)[-3:] if nd == 3 else (None, *tuple(vox)[-2:])
    if format in ("ome-tiff", "both"):
        paths["image"] = write_ome_tiff(out / "multicolor.ome.tif", data, axes_out, vox3, channel_names)
    if format in ("ome-zarr", "both"):
        key = "zarr" if "image" in paths else "image"
        paths[key] = write_ome_zarr(out / "multicolor.ome.zarr", data, axes_out, vox3, channel_names)
    pick = [0.0 if n in PLANE_IGNORED else 1.0 for n in source.names] + [0.0] * len(extras)
    plane = best_plane(image[0], pick) if nd == 3 else None
    limits = channel_limits(image, nd, plane=plane)
    n_c = len(source.names)
    floors = [0.0] * n_c + [float(np.percentile(image[:, i], 50)) for i in range(n_c, len(channel_names))]
    h, w = spatial[-2:]
    zoom = upscale if upscale is not None else max(1, 512 // max(h, w))

    def rgb(t: int) -> np.ndarray:
        pic = composite_rgb(
            image[t], colors, weights=weights, limits=limits, floors=floors, spatial_ndim=nd, plane=plane
        )
        return np.repeat(np.repeat(pic, zoom, axis=0), zoom, axis=1) if zoom > 1 else pic

    present = [i for i in range(len(channel_names)) if weights[i] > 0 and image[:, i].any()]
    # the legend lists what the composite shows
    paths["composite"] = _legend_png(
        out / "composite.png", rgb(0), [channel_names[i] for i in present], [colors[i] for i in present]
    )
    if n_t > 1 and movie is not None:
        paths["movie"] = write_movie(out / "movie", [rgb(t) for t in range(n_t)], fps=fps, format=movie)
    info = {
        "source": source.source,
        "frames": n_t,
        "shape": list(spatial),
        "voxel_size_um": list(vox),
        "channels": channel_names,
        "channel_model": "compartment channel = mask x intensity; extra channels as measured",
        "intensity": inten_note,
        "extra_channels": list(extras),
        "colors": {n: list(c) for n, c in zip(channel_names, colors, strict=True)},
        "composite_weights": dict(zip(channel_names, weights, strict=True)),
        "display_limits": {n: float(v) for n, v in zip(channel_names, limits, strict=True)},
        "composite": "one z plane (the busiest) or the 2D image; each channel scaled between its floor "
        "and display limit, x colour x weight, summed",
        "composite_plane": plane,
        "display_floors": {n: float(v) for n, v in zip(channel_names, floors, strict=True)},
        "movie_fps": fps if "movie" in paths else None,
        "files": {k: p.name for k, p in paths.items()},
    }
    paths["json"] = write_json(out / "compose.json", info)
