"""FG-net: a small 2D binary net trained through the shared fit on annotated colocalization images."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _coloc(seed, shape=(48, 48)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, np.uint8)
    for _ in range(6):
        cy, cx = rng.integers(4, shape[0] - 4, 2)
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= 6] = 1
    gfp = ndimage.gaussian_filter(truth.astype(np.float32) * 200, 1.0) + rng.normal(10, 2, shape)
    yellow = np.full(shape, 30.0) + rng.normal(0, 1, shape)
    return np.stack([yellow, yellow, gfp + 0.05 * yellow])[:, None].astype(np.float32), truth


def test_train_fgnet_and_make_masks_with_it(tmp_path):
    from stainfree import api
    from stainfree.evaluate.metrics import f1
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff

    images, masks = [], []
    for i in range(3):
        img, truth = _coloc(i)
        images.append(
            write_ome_tiff(
                tmp_path / "img" / f"c{i}.ome.tif", img, "CZYX", channel_names=["yellow", "red", "gfp"]
            )
        )
        masks.append(write_ome_tiff(tmp_path / "ann" / f"c{i}.ome.tif", truth, "YX"))
    bundle = api.train_fgnet(
        images[:2], masks[:2], tmp_path / "fg", max_steps=15, patch_shape=[32, 32], depth=1, base_channels=4
    )
    assert (bundle / "bundle.yaml").is_file()
    out = api.make_masks([images[2]], tmp_path / "masks", method="fgnet", fgnet=bundle)
    pred, _ = read_image(out[0])
    _, truth = _coloc(2)
    assert np.asarray(pred).shape == truth.shape
    assert f1(truth, np.asarray(pred)) > 0.5
