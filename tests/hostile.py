"""A corpus of hostile input files (truncated, lying headers, odd pixel types, broken metadata).

Shared by the robustness tests and ``benchmarks/robustness.py``: ``make_corpus(folder)`` writes the files and
returns their paths; every one must end in one ``error:`` line naming the file and exit code 2.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np


def _patch_tiff_size(data: bytes, path: Path, width: int, height: int) -> bytes:
    """The TIFF ``data`` with ImageWidth/ImageLength rewritten (the strips stay as they are)."""
    import tifffile

    out = bytearray(data)
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        for name, value in (("ImageWidth", width), ("ImageLength", height)):
            tag = tags[name]
            if tag.dtype == 3:  # SHORT
                out[tag.valueoffset : tag.valueoffset + 2] = struct.pack("<H", min(value, 65535))
            else:
                out[tag.valueoffset : tag.valueoffset + 4] = struct.pack("<I", value)
    return bytes(out)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def valid_png(path: Path, shape: tuple[int, int] = (16, 16)) -> Path:
    """A small 8-bit grey PNG."""
    from PIL import Image

    Image.fromarray((np.arange(shape[0] * shape[1]) % 251).astype(np.uint8).reshape(shape)).save(path)
    return path


def make_corpus(folder: Path) -> list[Path]:
    """Write the hostile files into ``folder`` and return their paths (files and OME-Zarr folders)."""
    import tifffile
    import zarr

    from stainfree.io.writers import write_ome_tiff

    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    def add(name: str, data: bytes) -> None:
        (folder / name).write_bytes(data)
        files.append(folder / name)

    good = folder / "_good.tif"
    tifffile.imwrite(good, (np.arange(64 * 64) % 4000).astype(np.uint16).reshape(64, 64))
    raw = good.read_bytes()
    add("truncated.tif", raw[: len(raw) // 2])
    add("header_only.tif", raw[:16])
    add("empty.tif", b"")
    add("random_bytes.tif", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    add("giant_header.tif", _patch_tiff_size(raw, good, 200_000, 200_000))
    good.unlink()
    tifffile.imwrite(folder / "complex.tif", (np.ones((8, 8)) + 1j).astype(np.complex64))
    files.append(folder / "complex.tif")

    ome = write_ome_tiff(
        folder / "_good.ome.tif", np.ones((2, 4, 32, 32), np.uint16), "CZYX", (1.0, 0.5, 0.5), ["a", "b"]
    )
    raw = ome.read_bytes()
    add("truncated.ome.tif", raw[: len(raw) * 2 // 3])
    ome.unlink()
    files.append(write_ome_tiff(folder / "many_channels.ome.tif", np.ones((300, 4, 4), np.uint8), "CYX"))

    png = valid_png(folder / "_good.png").read_bytes()
    (folder / "_good.png").unlink()
    add("truncated.png", png[: len(png) // 2])
    ihdr = struct.pack(">IIBBBBB", 150_000, 150_000, 8, 0, 0, 0, 0)
    add("giant_header.png", png[:8] + _png_chunk(b"IHDR", ihdr) + png[33:])
    add("not_a.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)

    broken_json = folder / "broken_json.ome.zarr"
    zarr.open_group(str(broken_json), mode="w", zarr_format=2)
    (broken_json / ".zattrs").write_text("{ this is not json")
    files.append(broken_json)
    no_datasets = folder / "no_datasets.ome.zarr"
    group = zarr.open_group(str(no_datasets), mode="w", zarr_format=2)
    group.attrs["multiscales"] = [{"version": "0.4", "axes": ["y", "x"]}]
    files.append(no_datasets)
    giant = folder / "giant.ome.zarr"
    group = zarr.open_group(str(giant), mode="w", zarr_format=2)
    group.create_array("0", shape=(200_000, 200_000), chunks=(200_000, 200_000), dtype="uint16")
    group.attrs["multiscales"] = [{"version": "0.4", "axes": ["y", "x"], "datasets": [{"path": "0"}]}]
    files.append(giant)
    cplx = folder / "complex.ome.zarr"
    group = zarr.open_group(str(cplx), mode="w", zarr_format=2)
    group.create_array("0", shape=(8, 8), chunks=(8, 8), dtype="complex64")
    group.attrs["multiscales"] = [{"version": "0.4", "axes": ["y", "x"], "datasets": [{"path": "0"}]}]
    files.append(cplx)
    wrong_axes = folder / "wrong_axes.ome.zarr"
    group = zarr.open_group(str(wrong_axes), mode="w", zarr_format=2)
    group.create_array("0", shape=(8, 8), chunks=(8, 8), dtype="uint8")
    group.attrs["multiscales"] = [{"axes": ["z", "y", "x"], "datasets": [{"path": "0"}]}]
    files.append(wrong_axes)

    add("random_bytes.czi", b"ZISRAWFILE" + bytes(200))
    (folder / "meta.json").write_text(json.dumps({"note": "not an image"}))
    files.append(folder / "meta.json")
    return files
