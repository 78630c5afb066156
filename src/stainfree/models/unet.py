"""The fnet-style U-Net (Ounkomol et al. 2018), one class for 2D and 3D."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

NORMS = ("batch", "group", "instance")


def _layers(spatial_dims: int) -> tuple[type, type, type, type]:
    if spatial_dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.Dropout3d
    if spatial_dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Dropout2d
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def norm_layer(kind: str, spatial_dims: int, channels: int) -> nn.Module:
    """A normalization layer: batch norm, group norm (8 channels a group, fewer for thin layers) or
    instance norm (affine)."""
    if kind == "batch":
        return _layers(spatial_dims)[2](channels)
    if kind == "group":
        groups = max(1, channels // 8)
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class DoubleConv(nn.Sequential):
    """(conv 3 - norm - ReLU) twice, optional dropout at the end; ``residual`` adds the block's input
    (through a 1x1 convolution where the width changes) before the last ReLU.

    The layers keep the indices of a plain ``nn.Sequential`` (``0`` conv, ``1`` norm, ...), so weights saved
    before the residual option existed still load.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        dropout: float = 0.0,
        *,
        norm: str = "batch",
        residual: bool = False,
    ) -> None:
        conv, _, _, drop = _layers(spatial_dims)
        layers: list[nn.Module] = [
            conv(in_channels, out_channels, kernel_size=3, padding=1),
            norm_layer(norm, spatial_dims, out_channels),
            nn.ReLU(inplace=True),
            conv(out_channels, out_channels, kernel_size=3, padding=1),
            norm_layer(norm, spatial_dims, out_channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(drop(dropout))
        super().__init__(*layers)
        self.skip: nn.Module | None = None
        if residual:
            self.skip = (
                nn.Identity()
                if in_channels == out_channels
                else conv(in_channels, out_channels, kernel_size=1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for name, layer in self._modules.items():
            if name == "skip":
                continue
            if name == "5" and self.skip is not None:
                y = y + self.skip(x)
            y = layer(y)
        return y


class UNet(nn.Module):
    """fnet-style U-Net: conv-BN-ReLU x2 per level, stride-2 conv down, transposed conv up, skip
    concatenation.

    The last layer is a plain 3x3 convolution (no activation). Inputs must have every spatial size divisible
    by ``2 ** depth`` (prediction pads).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of input and output.
    spatial_dims : int
        2 or 3.
    depth : int
        Number of down-sampling steps.
    base_channels : int
        Channels of the first level; doubled at each level.
    dropout : float
        Dropout after each double convolution (0 = none).
    norm : {"batch", "group", "instance"}
        Normalization after each convolution; group norm does not depend on the batch, which helps with the
        small batches of little data.
    residual : bool
        Residual double convolutions.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        spatial_dims: int = 3,
        depth: int = 4,
        base_channels: int = 32,
        dropout: float = 0.0,
        norm: str = "batch",
        residual: bool = False,
    ) -> None:
        super().__init__()
        conv, convt, _, _ = _layers(spatial_dims)
        self.spatial_dims = spatial_dims
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        prev = in_channels
        for i in range(depth):
            self.encoders.append(
                DoubleConv(spatial_dims, prev, widths[i], dropout, norm=norm, residual=residual)
            )
            self.downs.append(
                nn.Sequential(
                    conv(widths[i], widths[i], kernel_size=2, stride=2),
                    norm_layer(norm, spatial_dims, widths[i]),
                    nn.ReLU(inplace=True),
                )
            )
            prev = widths[i]
        self.bottom = DoubleConv(
            spatial_dims, widths[depth - 1], widths[depth], dropout, norm=norm, residual=residual
        )
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(depth)):
            self.ups.append(
                nn.Sequential(
                    convt(widths[i + 1], widths[i], kernel_size=2, stride=2),
                    norm_layer(norm, spatial_dims, widths[i]),
                    nn.ReLU(inplace=True),
                )
            )
            self.decoders.append(
                DoubleConv(spatial_dims, 2 * widths[i], widths[i], dropout, norm=norm, residual=residual)
            )
        self.head = conv(widths[0], out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, *spatial) -> (B, C_out, *spatial)."""
        factor = 2**self.depth
        if any(s % factor for s in x.shape[2:]):
            raise ValueError(f"spatial size {tuple(x.shape[2:])} must be divisible by 2**depth = {factor}")
        skips = []
        for enc, down in zip(self.encoders, self.downs, strict=True):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.bottom(x)
        for up, dec in zip(self.ups, self.decoders, strict=True):
            # the skip leaves the list as it is used: at inference it is freed once concatenated, before the
            # decoder's convolutions run (the full-resolution skip is the largest activation there is)
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)

    def encoder_modules(self) -> Iterator[nn.Module]:
        """The down path: encoder blocks, down-sampling convolutions and the bottom block."""
        yield from self.encoders
        yield from self.downs
        yield self.bottom
