"""Fake models for tests and benchmarks: bundles with known outputs, no training."""

from __future__ import annotations


def constant_bundle(
    folder, name, task, class_names, bias, patch_shape=(16, 16), threshold=None, seed=None, depth=1
):
    """A tiny segmentation bundle whose output is the constant ``bias`` (every weight zero): a 2D attention
    U-Net on Nile Red (ratiometric input), for testing the catalog runner without training. With ``seed``
    the weights are random instead (seeded), so that masks vary across the image; ``depth``: of the U-Net
    (its input sides must be multiples of ``2 ** depth``)."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)

    from stainfree.config import BundleConfig, ModelConfig
    from stainfree.models.bundle import save_bundle
    from stainfree.models.registry import build_model

    mc = ModelConfig(
        architecture="attention_unet",
        spatial_dims=2,
        in_channels=2,
        out_channels=len(bias),
        depth=depth,
        base_channels=2,
    )
    model = build_model(mc)
    with torch.no_grad():
        for p in model.parameters():
            if seed is None:
                p.zero_()
        last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    cfg = BundleConfig(
        name=name,
        task=task,
        spatial_dims=2,
        input_mode="2d",
        model=mc,
        signal_channels=["yellow", "red"],
        class_names=class_names,
        input_transform="ratiometric",
        voxel_size_um=None,
        patch_shape=list(patch_shape),
        threshold=threshold,
    )
    return save_bundle(folder / f"{name}.stainfree", model, cfg)


def random_nilered_bundle(folder, name, task, class_names, seed=0):
    """A tiny Nile Red segmentation bundle with seeded random weights: its masks depend on the image (for
    testing that a frame segmented in a series equals the frame segmented alone)."""
    return constant_bundle(folder, name, task, class_names, [0.0] * len(class_names), seed=seed)


def random_bundle(folder, name="random", spatial_dims=3, seed=0, depth=2, base_channels=4):
    """A tiny regression bundle with seeded random weights (one input channel, one output, z-score input):
    its output varies with the input, so tiling and blending differences show."""
    import torch

    from stainfree.config import BundleConfig, ModelConfig
    from stainfree.models.bundle import save_bundle
    from stainfree.models.registry import build_model

    torch.manual_seed(seed)
    mc = ModelConfig(
        architecture="fnet_unet",
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=1,
        depth=depth,
        base_channels=base_channels,
    )
    model = build_model(mc).eval()
    cfg = BundleConfig(
        name=name,
        task="regression",
        spatial_dims=spatial_dims,
        input_mode="3d" if spatial_dims == 3 else "2d",
        model=mc,
        voxel_size_um=None,
        patch_shape=[16, 32, 32] if spatial_dims == 3 else [32, 32],
    )
    return save_bundle(folder / f"{name}.stainfree", model, cfg)
