"""Fake models for tests and benchmarks: bundles with known outputs, no training."""

from __future__ import annotations


def constant_bundle(folder, name, task, class_names, bias, patch_shape=(16, 16), threshold=None):
    """A tiny segmentation bundle whose output is the constant ``bias`` (every weight zero): a 2D attention
    U-Net on Nile Red (ratiometric input), for testing the catalog runner without training."""
    import torch

    from stainfree.config import BundleConfig, ModelConfig
    from stainfree.models.bundle import save_bundle
    from stainfree.models.registry import build_model

    mc = ModelConfig(
        architecture="attention_unet",
        spatial_dims=2,
        in_channels=2,
        out_channels=len(bias),
        depth=1,
        base_channels=2,
    )
    model = build_model(mc)
    with torch.no_grad():
        for p in model.parameters():
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


def random_bundle(folder, name, task, class_names, seed=0, patch_shape=(16, 16)):
    """A tiny segmentation bundle with seeded random weights: its masks depend on the image (for testing
    that a frame segmented in a series equals the frame segmented alone)."""
    import torch

    from stainfree.config import BundleConfig, ModelConfig
    from stainfree.models.bundle import save_bundle
    from stainfree.models.registry import build_model

    mc = ModelConfig(
        architecture="attention_unet",
        spatial_dims=2,
        in_channels=2,
        out_channels=len(class_names),
        depth=1,
        base_channels=2,
    )
    torch.manual_seed(seed)
    model = build_model(mc)
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
    )
    return save_bundle(folder / f"{name}.stainfree", model, cfg)
