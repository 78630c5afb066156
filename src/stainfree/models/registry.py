"""Networks by name: the fnet U-Net, MONAI's UNet and AttentionUnet, built from a ModelConfig."""

from __future__ import annotations

import re
from typing import Any

from torch import nn

ARCHITECTURES = ("fnet_unet", "monai_unet", "attention_unet")


def architecture(config: Any) -> tuple[str, str, dict[str, Any]]:
    """The network a :class:`~stainfree.config.ModelConfig` describes, as (module, class name, keyword
    arguments): what :func:`build_model` calls, and what an exported package names as its architecture.

    Channels of MONAI networks are ``base_channels * 2**i`` for ``i = 0..depth`` with stride 2 between levels,
    so every architecture down-samples ``depth`` times.
    """
    arch = config.architecture
    if config.depth is None or config.base_channels is None:
        raise ValueError("model depth and base_channels must be set (the training recipe fills them)")
    channels = [int(config.base_channels * 2**i) for i in range(config.depth + 1)]
    strides = [2] * int(config.depth)
    common = {
        "spatial_dims": int(config.spatial_dims),
        "in_channels": int(config.in_channels),
        "out_channels": int(config.out_channels),
        "dropout": float(config.dropout),
    }
    if arch == "fnet_unet":
        kwargs = {
            **common,
            "depth": int(config.depth),
            "base_channels": int(config.base_channels),
            "norm": str(config.norm),
            "residual": bool(config.residual),
        }
        return "stainfree.models.unet", "UNet", kwargs
    if arch == "monai_unet":
        kwargs = {**common, "channels": channels, "strides": strides, "num_res_units": 2, "norm": "batch"}
        return "monai.networks.nets", "UNet", kwargs
    if arch == "attention_unet":
        return "monai.networks.nets", "AttentionUnet", {**common, "channels": channels, "strides": strides}
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


def build_model(config: Any) -> nn.Module:
    """Build the network a :class:`~stainfree.config.ModelConfig` describes (see :func:`architecture`).

    Parameters
    ----------
    config : ModelConfig
        ``architecture``, ``spatial_dims``, ``in_channels``, ``out_channels``, ``depth``, ``base_channels``,
        ``dropout`` (and for ``fnet_unet`` ``norm`` and ``residual``).

    Returns
    -------
    nn.Module
        The network, outputs without a final activation (logits for segmentation).
    """
    import importlib

    module, name, kwargs = architecture(config)
    return getattr(importlib.import_module(module), name)(**kwargs)


_MONAI_UNET_DECODER = re.compile(r"^model\.(1\.submodule\.)*2\.")
_ATTENTION_DECODER = re.compile(r"(^|\.)(attention|upconv|merge)\.|^model\.2\.")


def encoder_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters of the encoder (down path and bottom) of a network from :func:`build_model`."""
    from stainfree.models.unet import UNet

    names = [n for n, _ in model.named_parameters()]
    if isinstance(model, UNet):
        enc = {id(p) for m in model.encoder_modules() for p in m.parameters()}
        return [n for n, p in model.named_parameters() if id(p) in enc]
    cls = type(model).__name__
    if cls == "AttentionUnet":
        return [n for n in names if not _ATTENTION_DECODER.search(n)]
    if cls == "UNet":
        return [n for n in names if not _MONAI_UNET_DECODER.match(n)]
    raise ValueError(f"do not know the encoder of {cls}")


def encoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the encoder (for freezing when fine-tuning)."""
    wanted = set(encoder_parameter_names(model))
    return [p for n, p in model.named_parameters() if n in wanted]
