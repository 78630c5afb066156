"""Networks: fnet U-Net shapes in 2D/3D, the registry, encoder freezing, and bundles on disk."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from stainfree.config import BundleConfig, ModelConfig
from stainfree.errors import InputError
from stainfree.models.bundle import load_bundle, save_bundle
from stainfree.models.registry import build_model, encoder_parameter_names, encoder_parameters
from stainfree.models.unet import UNet


@pytest.mark.parametrize("dims,depth", [(2, 1), (2, 3), (3, 1), (3, 2)])
def test_unet_shapes_any_depth(dims, depth):
    net = UNet(2, 3, spatial_dims=dims, depth=depth, base_channels=4).eval()
    size = 2**depth * 2
    x = torch.randn(2, 2, *([size] * dims))
    y = net(x)
    assert y.shape == (2, 3, *([size] * dims))
    assert len(net.downs) == depth and net.encoders[0][0].out_channels == 4
    assert net.bottom[0].out_channels == 4 * 2**depth


def test_unet_no_final_activation_and_size_check():
    net = UNet(1, 1, spatial_dims=2, depth=2, base_channels=4).eval()
    assert isinstance(net.head, (nn.Conv2d,))
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the head's bias passes straight to the output: no ReLU/sigmoid/tanh at the end
        net.head.bias.fill_(-100.0)
        assert net(x).max() < -50
        net.head.bias.fill_(100.0)
        assert net(x).min() > 50
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 1, 10, 8))


@pytest.mark.parametrize("arch", ["fnet_unet", "monai_unet", "attention_unet"])
@pytest.mark.parametrize("dims", [2, 3])
def test_registry_builds_all_and_encoder_is_a_strict_subset(arch, dims):
    cfg = ModelConfig(
        architecture=arch, spatial_dims=dims, in_channels=2, out_channels=3, depth=2, base_channels=4
    )
    net = build_model(cfg).eval()
    x = torch.randn(1, 2, *([8] * dims))
    with torch.no_grad():
        assert net(x).shape == (1, 3, *([8] * dims))
    names = encoder_parameter_names(net)
    all_names = [n for n, _ in net.named_parameters()]
    assert 0 < len(names) < len(all_names)
    first = all_names[0]
    assert first in names  # the first convolution belongs to the encoder
    assert all_names[-1] not in names  # the output layer does not
    for p in encoder_parameters(net):
        p.requires_grad_(False)
    assert any(p.requires_grad for p in net.parameters())


def _bundle_cfg(model_cfg: ModelConfig, **kw) -> BundleConfig:
    return BundleConfig(**{"name": "t", "model": model_cfg, "spatial_dims": model_cfg.spatial_dims, **kw})


def test_bundle_round_trip_identical_outputs(tmp_path):
    cfg = ModelConfig(spatial_dims=3, depth=2, base_channels=4)
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    path = save_bundle(tmp_path / "m.stainfree", net, _bundle_cfg(cfg, voxel_size_um=(0.29, 0.29, 0.29)))
    assert (path / "weights.pt").is_file() and (path / "bundle.yaml").is_file()
    b = load_bundle(path)
    assert not b.model.training and b.config.voxel_size_um == (0.29, 0.29, 0.29)
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), b.model(x))
    # saving again replaces the folder atomically
    save_bundle(path, net, _bundle_cfg(cfg, name="again"))
    assert load_bundle(path).config.name == "again"


def test_bundle_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_bundle(tmp_path / "missing.stainfree")
    cfg = ModelConfig(spatial_dims=2, depth=1, base_channels=4)
    path = save_bundle(tmp_path / "m.stainfree", build_model(cfg), _bundle_cfg(cfg))
    (path / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="corrupt weights"):
        load_bundle(path)
    path = save_bundle(tmp_path / "v.stainfree", build_model(cfg), _bundle_cfg(cfg))
    data = yaml.safe_load((path / "bundle.yaml").read_text())
    data["version"] = 99
    (path / "bundle.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="version 99"):
        load_bundle(path)
    path = save_bundle(tmp_path / "w.stainfree", build_model(cfg), _bundle_cfg(cfg))
    data = yaml.safe_load((path / "bundle.yaml").read_text())
    data["model"]["base_channels"] = 8
    (path / "bundle.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="do not fit"):
        load_bundle(path)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_weights_that_would_run_code_are_refused_without_unsafe_advice(tmp_path, capsys):
    cfg = ModelConfig(spatial_dims=2, depth=1, base_channels=4)
    path = save_bundle(tmp_path / "m.stainfree", build_model(cfg), _bundle_cfg(cfg))
    torch.save({"w": _RunsCode()}, path / "weights.pt")
    with pytest.raises(InputError) as err:
        load_bundle(path)
    text = str(err.value)
    assert "not a plain weights file" in text and "will not be loaded" in text
    assert "weights_only" not in text and "False" not in text and "\n" not in text
    assert "this must never run" not in capsys.readouterr().out
    (path / "weights.pt").write_bytes(open(path / "weights.pt", "rb").read()[:40])  # truncated
    with pytest.raises(InputError, match="corrupt weights file"):
        load_bundle(path)
