"""The dataset manifest: a CSV of (signal, target) image pairs, their channels and their split.

Columns: ``signal``, ``target`` (paths; relative paths are relative to the CSV), optional ``signal_channels``
and ``target_channels`` (names or indices separated by ``;`` overriding the configuration for that row) and
``split`` (``train`` | ``val`` | ``test``; missing = ``train``).

The simulator's ``manifest.csv`` (columns field, brightfield, fluorescence, labels, nilered, ..., split) can
be used directly by naming its columns in :class:`stainfree.config.DataConfig`
(``signal_column="brightfield"``, ``target_column="fluorescence"``, ``target_channels=["dna"]``), or converted
with :func:`manifest_from_simulation`.
"""

from __future__ import annotations

import glob as _glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stainfree.errors import InputError, InputErrors

#: Columns of a simulator manifest that hold paths (resolved relative to the CSV like signal/target).
PATH_COLUMNS = (
    "signal",
    "target",
    "brightfield",
    "fluorescence",
    "fluorescence_clean",
    "nilered",
    "labels",
    "instances",
    "cells",
    "json",
)
IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".czi", ".ome.zarr", ".zarr", ".png")
SPLITS = ("train", "val", "test")


def read_manifest(path: str | os.PathLike, *, path_columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a manifest CSV, resolving relative paths against the CSV's folder.

    Parameters
    ----------
    path : path-like
        The CSV.
    path_columns : sequence of str, optional
        Columns holding paths; default: ``signal``, ``target`` and the simulator's image columns, where
        present.

    Returns
    -------
    DataFrame
        One row per pair, paths absolute, a ``split`` column (lower case, ``train`` where missing).

    Raises
    ------
    InputError
        When the file is missing, unreadable or has no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "manifest not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types for a bad CSV
        raise InputError(path, f"not a readable CSV ({exc})") from None
    if len(df) == 0:
        raise InputError(path, "manifest has no rows")
    root = path.resolve().parent
    cols = path_columns if path_columns is not None else [c for c in PATH_COLUMNS if c in df.columns]
    for col in cols:
        if col in df.columns:
            df[col] = [str(_resolve(v, root)) if v else "" for v in df[col]]
    if "split" not in df.columns:
        df["split"] = "train"
    df["split"] = [str(s).strip().lower() or "train" for s in df["split"]]
    df.attrs["root"] = str(root)
    df.attrs["path"] = str(path)
    return df


def _resolve(value: str, root: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (root / p)


def parse_channels(value: Any) -> list[str | int] | None:
    """Parse a manifest channel cell (``"dna;membrane"``, ``"0;2"``) into names/indices; empty gives None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    out: list[str | int] = []
    for part in text.replace(",", ";").split(";"):
        part = part.strip()
        if part:
            out.append(int(part) if part.lstrip("-").isdigit() else part)
    return out or None


def load_czyx(path: str | os.PathLike) -> tuple[np.ndarray, Any]:
    """Read an image as (C, Z, Y, X) with its :class:`~stainfree.types.ImageMeta`.

    Uses :func:`stainfree.io.readers.read_image`; raises InputError for a missing, unreadable or NaN image.
    """
    try:
        from stainfree.io.readers import as_czyx, read_image
    except ImportError:  # pragma: no cover - the readers module arrives with the io helper
        return _fallback_read(path)
    array, meta = read_image(path)
    return np.asarray(as_czyx(np.asarray(array), meta.axes)), meta


def _fallback_read(path: str | os.PathLike) -> tuple[np.ndarray, Any]:
    import tifffile

    from stainfree.types import ImageMeta

    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            arr = series.asarray()
            axes = series.axes.upper().replace("S", "C").replace("I", "Z").replace("Q", "Z")
    except Exception as exc:
        raise InputError(p, f"not a readable image ({exc})") from None
    keep = [i for i, a in enumerate(axes) if a in "CZYX"]
    if any(arr.shape[i] > 1 for i, a in enumerate(axes) if a not in "CZYX"):
        raise InputError(p, f"unsupported axes {axes!r} (time-lapse or extra dimensions)")
    arr = arr.reshape([arr.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    arr = np.transpose(arr, [axes.index(a) for a in "CZYX" if a in axes])
    axes = "".join(a for a in "CZYX" if a in axes)
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise InputError(p, "image contains NaN values")
    czyx = arr.reshape([arr.shape[axes.index(a)] if a in axes else 1 for a in "CZYX"])
    meta = ImageMeta(axes="CZYX", shape=czyx.shape, dtype=str(czyx.dtype), path=str(p))
    return czyx, meta


def _row_channels(
    row: pd.Series, column: str, default: Sequence[str | int] | None
) -> Sequence[str | int] | None:
    if column in row.index:
        parsed = parse_channels(row[column])
        if parsed is not None:
            return parsed
    return default


def validate_manifest(df: pd.DataFrame, data_config: Any) -> None:
    """Check every row of a manifest up front and report all problems together.

    Checks that files exist and are readable, that the channels exist, that signal and target have the same
    spatial shape after channel selection (a 2D target for a z-stack in ``zstack_to_2d`` mode), that their
    voxel sizes agree, that no image holds NaN, that every row gives the same number of channels, that splits
    are known and that there is something to train on.

    Parameters
    ----------
    df : DataFrame
        From :func:`read_manifest`.
    data_config : DataConfig
        Uses ``signal_column``, ``target_column``, ``signal_channels``, ``target_channels``, ``input_mode``.

    Raises
    ------
    InputErrors
        Every problem found, at once.
    """
    from stainfree.io.arrays import channel_indices

    src = df.attrs.get("path", "manifest")
    scol = getattr(data_config, "signal_column", "signal")
    tcol = getattr(data_config, "target_column", "target")
    problems: list[InputError] = []
    for col in (scol, tcol):
        if col not in df.columns:
            problems.append(
                InputError(src, f"no column {col!r} (columns: {', '.join(map(str, df.columns))})")
            )
    if problems:
        raise InputErrors(problems)
    if len(df) == 0:
        raise InputErrors([InputError(src, "manifest has no rows")])
    mode = getattr(data_config, "input_mode", "3d")
    n_sig: set[int] = set()
    n_tgt: set[int] = set()
    for i, (_, row) in enumerate(df.iterrows()):
        where = f"{src} row {i + 1}"
        split = str(row.get("split", "train"))
        if split not in SPLITS:
            problems.append(InputError(where, f"unknown split {split!r} (use {', '.join(SPLITS)})"))
        loaded = {}
        for col in (scol, tcol):
            p = str(row[col])
            if not p:
                problems.append(InputError(where, f"empty {col!r} path"))
                continue
            try:
                loaded[col] = load_czyx(p)
            except InputError as exc:
                problems.append(InputError(f"{where} ({col})", str(exc)))
            except Exception as exc:  # any reader failure is the user's file
                problems.append(InputError(f"{where} ({col})", f"{p}: not a readable image ({exc})"))
        shapes = {}
        for col, refs, counts in (
            (scol, _row_channels(row, "signal_channels", data_config.signal_channels), n_sig),
            (tcol, _row_channels(row, "target_channels", data_config.target_channels), n_tgt),
        ):
            if col not in loaded:
                continue
            arr, meta = loaded[col]
            if arr.size == 0:
                problems.append(InputError(meta.path or where, "image is empty"))
                continue
            if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
                problems.append(InputError(meta.path or where, "image contains NaN or infinite values"))
            try:
                idx = channel_indices(refs, meta.channel_names, arr.shape[0], meta.path or where)
                counts.add(len(idx))
            except InputError as exc:
                problems.append(exc)
            shapes[col] = arr.shape[1:]
        if len(shapes) == 2:
            s, t = shapes[scol], shapes[tcol]
            ok = s == t or (mode == "zstack_to_2d" and t[0] == 1 and s[1:] == t[1:])
            if not ok:
                problems.append(
                    InputError(
                        where, f"signal shape (z, y, x) {tuple(s)} does not match target shape {tuple(t)}"
                    )
                )
            vs = loaded[scol][1].voxel_size_um
            vt = loaded[tcol][1].voxel_size_um
            axes = range(1, 3) if mode != "3d" else range(3)
            for a in axes:
                if vs[a] is not None and vt[a] is not None and not np.isclose(vs[a], vt[a], rtol=1e-3):
                    problems.append(
                        InputError(where, f"voxel sizes differ: signal {tuple(vs)} vs target {tuple(vt)}")
                    )
                    break
    if len(n_sig) > 1:
        problems.append(InputError(src, f"rows select different numbers of signal channels: {sorted(n_sig)}"))
    if len(n_tgt) > 1:
        problems.append(InputError(src, f"rows select different numbers of target channels: {sorted(n_tgt)}"))
    if "split" in df.columns and not (df["split"] == "train").any():
        problems.append(InputError(src, "no row has split 'train'"))
    if problems:
        raise InputErrors(problems)


def _list_images(spec: str | os.PathLike) -> list[Path]:
    p = Path(spec)
    if p.is_dir() and p.suffix.lower() not in (".zarr",):
        files = [f for f in sorted(p.iterdir()) if _stem(f) is not None and not f.name.startswith(".")]
    else:
        files = [Path(f) for f in sorted(_glob.glob(str(spec)))]
    return files


def _stem(p: Path) -> str | None:
    name = p.name.lower()
    for suf in IMAGE_SUFFIXES:
        if name.endswith(suf):
            return p.name[: -len(suf)]
    return None


def build_manifest(
    signal: str | os.PathLike,
    target: str | os.PathLike,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> pd.DataFrame:
    """Pair signal and target images into a manifest with a seeded train/test split.

    Files are paired by name stem when both sides have the same set of stems, otherwise by sorted order.

    Parameters
    ----------
    signal, target : path-like
        A folder (every image file inside) or a glob pattern.
    test_fraction : float
        Fraction of pairs put in the ``test`` split (at least one when > 0 and there are 2+ pairs).
    seed : int
        Seed of the split.

    Returns
    -------
    DataFrame
        Columns ``signal``, ``target``, ``split`` (absolute paths).

    Raises
    ------
    InputError
        When nothing is found or the two sides cannot be paired.
    """
    sig = _list_images(signal)
    tgt = _list_images(target)
    if not sig:
        raise InputError(signal, "no image files found")
    if not tgt:
        raise InputError(target, "no image files found")
    s_stems = [_stem(f) or f.name for f in sig]
    t_stems = [_stem(f) or f.name for f in tgt]
    if set(s_stems) == set(t_stems) and len(set(s_stems)) == len(s_stems):
        by_stem = dict(zip(t_stems, tgt, strict=True))
        pairs = [(s, by_stem[st]) for s, st in zip(sig, s_stems, strict=True)]
    elif len(sig) == len(tgt):
        pairs = list(zip(sig, tgt, strict=True))
    else:
        raise InputError(
            signal, f"{len(sig)} signal file(s) but {len(tgt)} target file(s) in {target}; cannot pair"
        )
    if not 0.0 <= test_fraction < 1.0:
        raise InputError("test_fraction", f"must be in [0, 1), got {test_fraction}")
    n = len(pairs)
    n_test = int(round(test_fraction * n))
    if test_fraction > 0 and n > 1:
        n_test = min(max(n_test, 1), n - 1)
    else:
        n_test = 0
    order = np.random.default_rng(seed).permutation(n)
    split = np.array(["train"] * n, dtype=object)
    split[order[:n_test]] = "test"
    return pd.DataFrame(
        {
            "signal": [str(s.resolve()) for s, _ in pairs],
            "target": [str(t.resolve()) for _, t in pairs],
            "split": list(split),
        }
    )


def manifest_from_simulation(
    sim_manifest: str | os.PathLike,
    signal: str = "brightfield",
    target: str = "fluorescence",
    target_channel: str | Sequence[str] | None = "dna",
    signal_channel: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Turn the simulator's ``manifest.csv`` into a training manifest.

    Parameters
    ----------
    sim_manifest : path-like
        The simulator's manifest.
    signal, target : str
        Columns to use as signal and target (e.g. ``"nilered"`` and ``"labels"`` for segmentation).
    target_channel, signal_channel : str or sequence of str, optional
        Channel names written to ``target_channels`` / ``signal_channels``.

    Returns
    -------
    DataFrame
        Columns ``signal``, ``target``, ``signal_channels``, ``target_channels``, ``split`` (absolute paths).
    """
    df = read_manifest(sim_manifest)
    for col in (signal, target):
        if col not in df.columns:
            raise InputError(sim_manifest, f"no column {col!r} (columns: {', '.join(map(str, df.columns))})")

    def cell(ch: str | Sequence[str] | None) -> str:
        if ch is None:
            return ""
        return ch if isinstance(ch, str) else ";".join(ch)

    return pd.DataFrame(
        {
            "signal": df[signal].tolist(),
            "target": df[target].tolist(),
            "signal_channels": [cell(signal_channel)] * len(df),
            "target_channels": [cell(target_channel)] * len(df),
            "split": df["split"].tolist(),
        }
    )


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a manifest CSV atomically and return the path.

    Paths in ``df`` are taken as Python opens them (absolute, or relative to the current directory). They are
    stored relative to the CSV's folder when they lie below it (the folder can then move as a whole), absolute
    otherwise, so that :func:`read_manifest`, which resolves against the CSV's folder, finds the same files.
    """
    from stainfree.io.atomic import atomic_path

    path = Path(path)
    root = path.resolve().parent
    df = df.copy()
    for col in (c for c in PATH_COLUMNS if c in df.columns):
        df[col] = [_portable(v, root) if v else v for v in df[col]]
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def _portable(value: str | os.PathLike, root: Path) -> str:
    """``value`` relative to ``root`` when below it, else absolute."""
    p = Path(value).resolve()
    return os.path.relpath(p, root) if p.is_relative_to(root) else str(p)
