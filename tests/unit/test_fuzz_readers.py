"""Property-based fuzzing of the readers: random bytes, mutated TIFF / OME-TIFF / PNG / OME-Zarr headers and
random manifests. The only outcomes allowed are a valid image (or table) or an InputError, fast, with little
memory."""

from __future__ import annotations

import io
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stainfree.errors import InputError, StainfreeError
from stainfree.io.manifest import read_manifest
from stainfree.io.readers import read_image

MAX_BYTES = 8 << 20  # what a reader may read into memory in these tests
FUZZ = settings(
    max_examples=40,
    deadline=None,  # timed below, per example, with a looser limit than hypothesis' own
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _valid_bytes() -> dict[str, bytes]:
    import tifffile
    from PIL import Image

    from stainfree.io.writers import write_ome_tiff

    out: dict[str, bytes] = {}
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    tifffile.imwrite(buf, rng.integers(0, 4000, (2, 16, 16), dtype=np.uint16))
    out[".tif"] = buf.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_ome_tiff(
            Path(tmp) / "a.ome.tif", rng.random((2, 2, 16, 16), dtype=np.float32), "CZYX", (1, 0.5, 0.5)
        )
        out[".ome.tif"] = path.read_bytes()
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(buf, format="PNG")
    out[".png"] = buf.getvalue()
    return out


VALID = _valid_bytes()


def _outcome(call: Callable[[], Any], limit_s: float = 10.0) -> Any:
    """Run ``call``; an InputError is fine, anything else raises. Checks time and peak traced memory."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        result = call()
    except StainfreeError:
        result = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - t0 < limit_s
    assert peak < 4 * MAX_BYTES, f"peak memory {peak} bytes"
    return result


def _read(path: Path) -> None:
    def call() -> Any:
        return read_image(path, max_bytes=MAX_BYTES)

    result = _outcome(call)
    if result is not None:
        array, meta = result
        assert (
            2 <= array.ndim <= 5 and tuple(array.shape) == meta.shape and np.dtype(array.dtype).kind in "uifb"
        )


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".tif", ".ome.tif", ".png", ".jpg", ".tiff"]))
def test_random_bytes(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x{suffix}"
        path.write_bytes(data)
        _read(path)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[suffix])
    for _ in range(draw(st.integers(1, 6))):
        header = draw(st.booleans())  # most damage where the header is
        pos = draw(st.integers(0, min(len(data), 200 if header else len(data)) - 1))
        kind = draw(st.sampled_from(["byte", "word", "cut"]))
        if kind == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "word":  # a plausible-looking big number (sizes, offsets, counts)
            data[pos : pos + 4] = draw(
                st.sampled_from([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 200_000])
            ).to_bytes(4, draw(st.sampled_from(["little", "big"])))
        else:
            del data[pos:]
            break
    return suffix, bytes(data)


@FUZZ
@given(case=mutated())
def test_mutated_headers(case: tuple[str, bytes]) -> None:
    suffix, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x{suffix}"
        path.write_bytes(data)
        _read(path)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
AXES = st.lists(
    st.sampled_from(["t", "c", "z", "y", "x", "q"]) | st.fixed_dictionaries({"name": st.text(max_size=2)}),
    max_size=6,
)


@st.composite
def zarr_attrs(draw: st.DrawFn) -> dict:
    dataset = draw(st.sampled_from([{"path": "0"}, {"path": "nope"}, {}]) | JSON)
    ms = {"axes": draw(AXES | JSON), "datasets": draw(st.sampled_from([[dataset], [], None]))}
    if draw(st.booleans()):
        ms["coordinateTransformations"] = draw(JSON)
    return {"multiscales": draw(st.sampled_from([[ms], ms, [], None]) | JSON), "omero": draw(JSON)}


@settings(FUZZ, max_examples=20)  # each example writes a Zarr store: slower than the others
@given(
    attrs=zarr_attrs(),
    shape=st.lists(st.integers(0, 300_000), min_size=0, max_size=5),
    dtype=st.sampled_from(["<u2", "<f4", "<c8", "|b1", "|O", "<i8", "bogus"]),
)
def test_mutated_ome_zarr_metadata(attrs: dict, shape: list[int], dtype: str) -> None:
    import zarr

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "x.ome.zarr"
        group = zarr.open_group(str(root), mode="w", zarr_format=2)
        group.create_array("0", shape=(4, 8, 8), chunks=(4, 8, 8), dtype="uint16", fill_value=3)
        zarray = json.loads((root / "0" / ".zarray").read_text())
        zarray.update(shape=shape, chunks=[max(1, s) for s in shape], dtype=dtype)
        (root / "0" / ".zarray").write_text(json.dumps(zarray))
        (root / ".zattrs").write_text(json.dumps(attrs))
        _read(root)


CELL = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)


@FUZZ
@given(
    header=st.lists(st.sampled_from(["signal", "target", "split", "channels", "x", ""]) | CELL, max_size=5),
    rows=st.lists(st.lists(CELL, max_size=6), max_size=6),
    raw=st.none() | st.binary(max_size=512),
)
def test_random_manifests(header: list[str], rows: list[list[str]], raw: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.csv"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text("\n".join(",".join(r) for r in [header, *rows]), encoding="utf-8")
        df = _outcome(lambda: read_manifest(path))
        if df is not None:
            assert len(df) > 0 and "split" in df.columns


def test_fuzz_helpers_catch_a_non_input_error() -> None:
    def boom() -> None:
        raise ValueError("not an InputError")

    with pytest.raises(ValueError):
        _outcome(boom)
    assert _outcome(lambda: (_ for _ in ()).throw(InputError("x", "bad"))) is None
