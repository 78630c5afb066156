"""api.compose / stainfree compose on a 5-frame mask stack, and quantify --extra-channel."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from stainfree import api
from stainfree.cli import app
from stainfree.inference.segment import COMPARTMENT_COLORS
from stainfree.io.movie import movie_frame_count
from stainfree.io.readers import read_image
from stainfree.io.writers import write_ome_tiff
from stainfree.types import COMPARTMENTS

VOX = (0.3, 0.1, 0.1)
T = 5


def _series(tmp_path):
    """5 frames of 15 masks (segment's layout), a Nile Red pair and a 'microtubules' channel touching a
    lysosome that moves along x."""
    shape = (6, 24, 40)
    masks = np.zeros((T, len(COMPARTMENTS), *shape), np.uint8)
    c = {n: i for i, n in enumerate(COMPARTMENTS)}
    yellow = np.full((T, *shape), 100.0, np.float32)
    red = np.full((T, *shape), 100.0, np.float32)
    tubes = np.full((T, *shape), 10.0, np.float32)
    for t in range(T):
        masks[t, c["extracellular"]] = 1
        masks[t, c["extracellular"], 1:5, 2:22, 2:38] = 0
        masks[t, c["cytosol"], 1:5, 2:22, 2:38] = 1
        x = 6 + 2 * t
        masks[t, c["cytosol"], 2:4, 8:12, x : x + 4] = 0
        masks[t, c["lysosome"], 2:4, 8:12, x : x + 4] = 1
        yellow[t, 2:4, 8:12, x : x + 4] = 300.0 + t
        red[t, 2:4, 8:12, x : x + 4] = 200.0
        tubes[t, 2:4, 12:14, 4:36] = 80.0  # a microtubule bundle right below the lysosome
    mpath = tmp_path / "cell_masks.ome.tif"
    write_ome_tiff(mpath, masks, "TCZYX", VOX, list(COMPARTMENTS))
    npath = tmp_path / "nilered.ome.tif"
    write_ome_tiff(npath, np.stack([yellow, red], axis=1), "TCZYX", VOX, ["yellow", "red"])
    tpath = tmp_path / "tubes.ome.tif"
    write_ome_tiff(tpath, tubes, "TZYX", VOX)
    return mpath, npath, tpath, masks, yellow, red, tubes


def test_compose_image_composite_movie_and_extra_channel(tmp_path):
    mpath, npath, tpath, masks, yellow, red, tubes = _series(tmp_path)
    out = tmp_path / "out"
    paths = api.compose(
        mpath, out, nilered=npath, extra_channels=[(tpath, "microtubules")], channel_alignment="none"
    )
    assert set(paths) == {"image", "composite", "movie", "json"}
    img, meta = read_image(paths["image"])
    img = np.asarray(img)
    assert meta.axes == "TCZYX" and img.shape == (T, 16, 6, 24, 40)
    assert list(meta.channel_names) == [*COMPARTMENTS, "microtubules"]
    # channel = mask x Nile Red intensity ((Y + R) / 2 above the camera offset), the extra channel as measured
    lyso = COMPARTMENTS.index("lysosome")
    inten = img[:, lyso][masks[:, lyso] > 0]
    assert inten.min() > 0 and np.all(img[:, lyso][masks[:, lyso] == 0] == 0)
    cyto = COMPARTMENTS.index("cytosol")
    assert np.all(img[:, cyto][masks[:, cyto] == 0] == 0)
    np.testing.assert_allclose(img[:, -1], tubes)
    assert movie_frame_count(paths["movie"]) == T and paths["movie"].suffix == ".mp4"
    info = json.loads(paths["json"].read_text())
    assert info["colors"]["lysosome"] == list(COMPARTMENT_COLORS["lysosome"])
    assert info["channels"][-1] == "microtubules" and info["frames"] == T
    # the composite shows the lysosome in its catalog colour in the chosen plane
    from PIL import Image

    assert Image.open(paths["composite"]).mode in ("RGB", "RGBA")


def test_cli_compose_and_quantify_extra_channel(tmp_path):
    mpath, npath, tpath, *_ = _series(tmp_path)
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["compose", str(mpath), "--out", str(tmp_path / "c"), "--nilered", str(npath),
         "--extra-channel", f"{tpath}:microtubules", "--format", "both", "--movie", "gif"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "multicolor.ome.zarr").is_dir() and (tmp_path / "c" / "movie.gif").is_file()
    assert movie_frame_count(tmp_path / "c" / "movie.gif") == T

    tables = api.quantify(mpath, tmp_path / "q", nilered=npath, extra_channels=[(tpath, "microtubules")])
    obj = tables["objects"]
    mt = obj[obj["structure"] == "microtubules"]
    assert len(mt) == T and np.allclose(mt["volume_um3"], 2 * 2 * 32 * np.prod(VOX))
    cont = tables["contacts"]
    pair = cont[(cont["structure_a"] == "lysosome") & (cont["structure_b"] == "microtubules")]
    assert len(pair) == T and (pair["contact_area_um2"] > 0).all()
    oc = tables["object_contacts"]
    assert {"lysosome", "microtubules"} <= set(oc["structure_a"]) | set(oc["structure_b"])
    res = runner.invoke(
        app,
        ["quantify", str(mpath), "--out", str(tmp_path / "q2"), "--no-figures",
         "--extra-channel", f"{tpath}:microtubules"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    import pandas as pd

    assert "microtubules" in set(pd.read_csv(tmp_path / "q2" / "objects.csv")["structure"])


def test_large_stacks_are_memory_mapped_with_equal_output(tmp_path, monkeypatch):
    import stainfree.workflows.compose as wc

    mpath, npath, tpath, *_ = _series(tmp_path)
    a = api.compose(mpath, tmp_path / "a", nilered=npath, movie=None, channel_alignment="none")
    monkeypatch.setattr(wc, "IN_MEMORY_BYTES", 0)
    b = api.compose(mpath, tmp_path / "b", nilered=npath, movie=None, channel_alignment="none")
    np.testing.assert_array_equal(
        np.asarray(read_image(a["image"])[0]), np.asarray(read_image(b["image"])[0])
    )
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".multicolor")]
