"""Movies of RGB frames: H.264 MP4 (plays in a browser's <video>) through imageio-ffmpeg, or an animated GIF.

The MP4 is yuv420p with the moov atom in front (``+faststart``), the form browsers play; frames are padded
with black to even sizes (yuv420p needs them). Without a usable ffmpeg, ``write_movie(..., "mp4")`` falls back
to a GIF beside the requested name and says so in its return value. Both are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stainfree.io.atomic import atomic_path

__all__ = ["MOVIE_FORMATS", "movie_frame_count", "write_movie"]

MOVIE_FORMATS: tuple[str, ...] = ("mp4", "gif")


def _even(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame)
    if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
        raise ValueError(f"a movie frame must be uint8 (Y, X, 3), got {f.dtype} {f.shape}")
    pad = ((0, f.shape[0] % 2), (0, f.shape[1] % 2), (0, 0))
    return np.ascontiguousarray(np.pad(f, pad) if any(p[1] for p in pad) else f)


def _write_mp4(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (w, h),
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            macro_block_size=1,
            quality=None,
            bitrate=None,
            output_params=["-crf", "20", "-movflags", "+faststart", "-f", "mp4"],
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for f in frames:
            writer.send(f)
        writer.close()


def _write_gif(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=max(20, round(1000 / fps)),
            loop=0,
        )


def write_movie(
    path: str | os.PathLike, frames: Sequence[np.ndarray], *, fps: float = 4.0, format: str = "mp4"
) -> Path:
    """Write RGB frames as an H.264 MP4 or an animated GIF.

    Parameters
    ----------
    path : path-like
        Destination; its suffix is replaced by ``.mp4`` / ``.gif``.
    frames : sequence of (Y, X, 3) uint8
        All the same size (odd sizes are padded with one black row / column).
    fps : float
        Frames per second.
    format : {"mp4", "gif"}
        "mp4" falls back to GIF when ffmpeg cannot be run.

    Returns
    -------
    Path
        The file written (``.gif`` after a fallback).
    """
    if format not in MOVIE_FORMATS:
        raise ValueError(f"unknown movie format {format!r}; use one of {MOVIE_FORMATS}")
    frames = [_even(f) for f in frames]
    if not frames:
        raise ValueError("a movie needs at least one frame")
    if len({f.shape for f in frames}) != 1:
        raise ValueError("movie frames differ in size")
    base = Path(path)
    if format == "mp4":
        target = base.with_suffix(".mp4")
        try:
            _write_mp4(target, frames, fps)
            return target
        except (ImportError, RuntimeError, OSError, BrokenPipeError):
            pass  # no usable ffmpeg: a GIF instead
    target = base.with_suffix(".gif")
    _write_gif(target, frames, fps)
    return target


def movie_frame_count(path: str | os.PathLike) -> int:
    """Number of frames of an MP4 (decoded with imageio-ffmpeg) or a GIF."""
    p = Path(path)
    if p.suffix.lower() == ".gif":
        from PIL import Image

        with Image.open(p) as im:
            return int(getattr(im, "n_frames", 1))
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(p))
    next(reader)  # metadata
    return sum(1 for _ in reader)
