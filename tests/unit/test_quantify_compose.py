"""The multi-colour core: channel = mask x intensity, composite colours, Otsu structures, the movie writer."""

from __future__ import annotations

import numpy as np
import pytest

from stainfree.errors import InputError
from stainfree.io.movie import movie_frame_count, write_movie
from stainfree.quantify.compose import (
    ExtraStructureSource,
    best_plane,
    channel_limits,
    composite_rgb,
    frame_masks,
    multicolor_channels,
    otsu_structure,
)
from stainfree.quantify.inputs import load_masks


def test_channel_is_mask_times_intensity_and_extras_ride_along():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 4, 8, 8)) > 0.5
    inten = rng.random((4, 8, 8)).astype(np.float32) * 100
    extra = rng.random((1, 4, 8, 8)).astype(np.float32)
    out = multicolor_channels(masks, inten, extra)
    assert out.shape == (4, 4, 8, 8) and out.dtype == np.float32
    for c in range(3):
        np.testing.assert_array_equal(out[c], masks[c] * inten)
    np.testing.assert_array_equal(out[3], extra[0])
    np.testing.assert_array_equal(multicolor_channels(masks, None), masks.astype(np.float32))
    with pytest.raises(InputError):
        multicolor_channels(masks, inten[:2])


def test_composite_colours_and_limits():
    ch = np.zeros((2, 3, 4, 4), np.float32)
    ch[0, 1, 0, 0] = 10.0  # red channel in plane 1
    ch[1, 2, 3, 3] = 5.0  # green channel in plane 2
    rgb = composite_rgb(ch, [(255, 0, 0), (0, 255, 0)])  # maximum projection
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[3, 3]) == (0, 255, 0)
    assert tuple(rgb[1, 1]) == (0, 0, 0)
    half = composite_rgb(ch, [(255, 0, 0), (0, 255, 0)], weights=[0.5, 0.0])
    assert tuple(half[0, 0]) == (128, 0, 0) and tuple(half[3, 3]) == (0, 0, 0)
    plane1 = composite_rgb(ch, [(255, 0, 0), (0, 255, 0)], plane=1)
    assert tuple(plane1[3, 3]) == (0, 0, 0) and tuple(plane1[0, 0]) == (255, 0, 0)
    np.testing.assert_allclose(channel_limits(ch, 3), [10.0, 5.0])
    assert best_plane(ch, [1.0, 0.0]) == 1 and best_plane(ch, [0.0, 1.0]) == 2


def test_frame_masks_from_every_kind():
    lab = np.array([[[0, 1], [2, 1]]], np.uint8)  # (T, Y, X)
    src = load_masks(lab, axes="TYX", names=["a", "b"])
    m = frame_masks(src, 0)
    np.testing.assert_array_equal(m[0], lab[0] == 1)
    np.testing.assert_array_equal(m[1], lab[0] == 2)
    stack = np.stack([lab[0] == 1, lab[0] == 2]).astype(np.float32)
    src2 = load_masks(stack, axes="CYX", names=["a", "b"])
    np.testing.assert_array_equal(frame_masks(src2, 0), m)


def test_otsu_structure_and_extra_source_objects():
    img = np.zeros((2, 4, 20, 20), np.float32)
    img[:, 1:3, 2:6, 2:6] = 50.0  # one bright block per frame
    img[1, 1:3, 12:16, 12:16] = 50.0  # a second one in frame 1
    masks = otsu_structure(img + 1.0, 3)
    assert masks.shape == img.shape and masks[0].sum() == 32 and masks[1].sum() == 64
    lab = np.ones((2, 4, 20, 20), np.uint8)
    src = ExtraStructureSource.wrap(load_masks(lab, axes="TZYX", names=["cytosol"]), {"tubes": masks})
    assert src.names == ("cytosol",) and list(src.extra_masks) == ["tubes"]
    om0 = src.object_map(0, min_size=5)
    om1 = src.object_map(1, min_size=5)
    assert om0.names == ("cytosol", "tubes")
    count = {n: int((om1.structure_of == i).sum()) for i, n in enumerate(om1.names)}
    assert count == {"cytosol": 1, "tubes": 2}
    assert int((om0.structure_of == 1).sum()) == 1
    with pytest.raises(InputError):
        ExtraStructureSource.wrap(src, {"cytosol": masks})


def test_five_frame_mp4_reads_back(tmp_path):
    frames = [np.full((31, 45, 3), 40 * i, np.uint8) for i in range(5)]
    path = write_movie(tmp_path / "movie.mp4", frames, fps=5)
    assert path.suffix == ".mp4" and path.stat().st_size > 0
    assert movie_frame_count(path) == 5
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (46, 32)  # padded to even sizes for yuv420p
    assert "h264" in meta["codec"]
    gif = write_movie(tmp_path / "movie", frames, format="gif")
    assert gif.suffix == ".gif" and movie_frame_count(gif) == 5
