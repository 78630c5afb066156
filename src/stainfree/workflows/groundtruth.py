"""Ground truth for the organelle networks: masks from colocalization images (bleed-through subtracted, lipid
droplets zeroed by a mask or an LD network) and the FG-net that finds their foreground."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from stainfree.workflows.organelles import catalog_augment, publish_bundle

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np


def make_masks(
    folder_or_files: str | Path | list[str | Path],
    out_dir: str | Path,
    *,
    method: str = "threshold",
    bleed: float = 0.05,
    ld_mask: str | Path | None = None,
    fgnet: str | Path | Callable[[np.ndarray], np.ndarray] | None = None,
    ld_threshold: float = 0.5,
    ld_bundle: str | Path | None = None,
) -> list[Path]:
    """Ground-truth masks from colocalization images (see :func:`stainfree.data.groundtruth.make_masks`;
    ``ld_mask`` may be a binary mask, an LD probability map (``> ld_threshold``) or a ``segment`` output).

    ``fgnet`` (for ``method="fgnet"``) is an FG-net bundle path, loaded here with
    :func:`stainfree.inference.fgnet.fgnet_predictor`, or such a predictor already made. ``ld_bundle`` is
    a lipid-droplet network run on each image's Nile Red channels (by name, or yellow and red as the first
    two of three unnamed channels); its probability ``> ld_threshold`` is zeroed (instead of ``ld_mask``).
    """
    from stainfree.data.groundtruth import make_masks as _make_masks

    predictor = None
    if method == "fgnet" and fgnet is not None:
        if callable(fgnet):
            predictor = fgnet
        else:
            from stainfree.inference.fgnet import fgnet_predictor

            predictor = fgnet_predictor(fgnet)
    ld: Any = ld_mask
    if ld_bundle is not None:
        if ld_mask is not None:
            from stainfree.errors import InputError

            raise InputError(str(ld_bundle), "give either an LD mask or an LD bundle, not both")
        ld = ld_network_mask(ld_bundle, threshold=ld_threshold)
    return _make_masks(
        folder_or_files,
        out_dir,
        method=method,
        bleed=bleed,
        ld_mask=ld,
        fgnet=predictor,
        ld_threshold=ld_threshold,
    )


def ld_network_mask(bundle: str | Path, *, threshold: float = 0.5) -> Callable[[np.ndarray, Any], np.ndarray]:
    """A function ``(czyx, meta) -> bool (Z, Y, X)``: the voxels an LD network calls lipid droplets.

    Unnamed three-channel images are read as (yellow, red, GFP), as colocalization images are.
    """
    from dataclasses import replace

    from stainfree.inference.predict import predict_with_bundle
    from stainfree.models.bundle import load_bundle

    b = load_bundle(bundle)

    def find(czyx: np.ndarray, meta: Any) -> np.ndarray:
        import numpy as np

        names = tuple(meta.channel_names or ())
        if not names and czyx.shape[0] == 3:
            meta = replace(meta, channel_names=("yellow", "red", "gfp"))
        meta = replace(meta, axes="CZYX", shape=tuple(czyx.shape))
        prob, _ = predict_with_bundle(b, czyx, meta)
        prob = np.asarray(prob)
        return prob[0].reshape(czyx.shape[1:]) > threshold

    return find


def train_fgnet(
    images: list[str | Path],
    masks: list[str | Path],
    out_dir: str | Path,
    *,
    bleed: float = 0.05,
    max_steps: int = 300,
    patch_shape: list[int] | None = None,
    depth: int = 3,
    base_channels: int = 16,
    name: str = "fgnet",
    progress: bool = False,
) -> Path:
    """Train an FG-net: a small 2D binary network on a handful of annotated colocalization images.

    The inputs are the bleed-through-corrected GFP channels (written to ``out_dir/fgnet_inputs``), the targets
    the annotated masks. The result segments the foreground of any organelle's colocalization image
    (``make_masks(..., method="fgnet", fgnet=bundle)``).

    Returns
    -------
    Path
        The FG-net bundle ``out_dir/<name>.stainfree``.
    """
    import numpy as np
    import pandas as pd

    from stainfree.config import DataConfig, ModelConfig, TrainConfig, TrainingJob
    from stainfree.data.groundtruth import split_colocalization, subtract_bleedthrough
    from stainfree.errors import InputError
    from stainfree.io.manifest import write_manifest
    from stainfree.io.readers import as_czyx, read_image
    from stainfree.io.writers import write_ome_tiff
    from stainfree.train.fit import fit

    if len(images) != len(masks) or not images:
        raise InputError("fgnet training", f"{len(images)} image(s), {len(masks)} mask(s); need equal, >= 1")
    out = Path(out_dir)
    rows = []
    for i, (img, msk) in enumerate(zip(images, masks, strict=True)):
        arr, meta = read_image(img)
        czyx = np.asarray(as_czyx(np.asarray(arr), meta.axes))
        gfp, yellow = split_colocalization(czyx, meta.channel_names, source=str(img))
        g = subtract_bleedthrough(gfp, yellow, bleed) if yellow is not None else gfp.astype(np.float32)
        dest = write_ome_tiff(out / "fgnet_inputs" / f"image_{i:03d}.ome.tif", g, "ZYX")
        rows.append({"signal": str(dest), "target": str(Path(msk).resolve()), "split": "train"})
    manifest = write_manifest(pd.DataFrame(rows), out / "fgnet_inputs" / "manifest.csv")
    job = TrainingJob(
        name=name,
        data=DataConfig(
            manifest=manifest,
            class_names=["foreground"],
            input_mode="2d",
            voxel_size_um=None,
            normalization="percentile",
            patch_shape=patch_shape or [128, 128],
            val_fraction=0.0,
        ),
        model=ModelConfig(
            architecture="attention_unet",
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            depth=depth,
            base_channels=base_channels,
        ),
        train=TrainConfig(
            task="binary",
            loss="dice_ce",
            lr=1e-3,
            betas=(0.9, 0.999),
            batch_size=4,
            max_steps=max_steps,
            val_every_n_steps=max(10, max_steps // 5),
            checkpoint_every_n_steps=max(10, max_steps // 5),
            monitor="val_f1",
            augment=catalog_augment(True),
            scheduler="none",
            ema_decay=None,
            gradient_clip=None,
            accelerator="cpu",
            devices=1,
        ),
        output_dir=out / "runs" / name,
    )
    return publish_bundle(Path(fit(job, progress=progress)), out / f"{name}.stainfree")
