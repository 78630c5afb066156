"""Shared test fixtures: the real sample data folder (skipped when absent) and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; tests that need it are skipped with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (only present beside the project checkout)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny test networks run fastest, and steadiest, on one intra-op thread.

    On a busy 2-core machine two OpenMP threads can make a small convolution up to 100x slower.
    """
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def constant_bundle():
    """Factory of tiny segmentation bundles whose output is the constant ``bias`` (every weight zero).

    ``constant_bundle(folder, name, task, class_names, bias, patch_shape=(16, 16)) -> bundle path``: a 2D
    attention U-Net on Nile Red (ratiometric input), for testing the catalog runner without training.
    """
    torch = pytest.importorskip("torch")
    from stainfree.config import BundleConfig, ModelConfig
    from stainfree.models.bundle import save_bundle
    from stainfree.models.registry import build_model

    def make(folder, name, task, class_names, bias, patch_shape=(16, 16)):
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
        )
        return save_bundle(folder / f"{name}.stainfree", model, cfg)

    return make
