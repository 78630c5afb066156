"""A minimal Leica LIF writer for tests (no LIF sample file is available offline).

Layout of a version-2 LIF file, as parsed by ``liffile.LifFile``:

* header: ``<I 0x70>`` ``<I size>`` ``<B 0x2A>`` ``<I n>`` then the XML, ``n`` UTF-16-LE code units;
* memory blocks: ``<I 0x70>`` ``<I 0>`` ``<B 0x2A>`` ``<Q nbytes>`` ``<B 0x2A>`` ``<I m>``, the block id
  (``m`` UTF-16-LE code units), then ``nbytes`` of data.

The XML names one image element (as Leica writes it, a child of the project element, which has an empty
memory block of its own). Its ``ImageDescription`` holds one ``ChannelDescription`` per channel (the channel
name goes into ``LUTName``, which bioio-lif reports as the channel name) and ``DimensionDescription`` elements
for X (DimID 1), Y (2) and Z (3) with ``Length`` in metres over ``NumberOfElements - 1`` intervals, the way
LAS X writes them (bioio-lif: voxel size = Length / (NumberOfElements - 1), times 1e6 when ``Unit="m"``).
Channels are stored plane-interleaved (for each z: channel 0 plane, channel 1 plane, ...), i.e. the bytes are
a C-order ``Z, C, Y, X`` array, as LAS X stores confocal stacks.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

_MAGIC = 0x70
_MARK = 0x2A


def lif_xml(
    shape_czyx: tuple[int, int, int, int],
    dtype: np.dtype,
    *,
    channel_names: Sequence[str],
    voxel_size_um: tuple[float, float, float],
    block_id: str = "MemBlock_1",
    name: str = "stack",
) -> str:
    """The XML header of a one-image LIF file (see the module docstring)."""
    nc, nz, ny, nx = shape_czyx
    item = np.dtype(dtype).itemsize
    resolution = item * 8
    channels = []
    for i, ch_name in enumerate(channel_names):
        channels.append(
            f'<ChannelDescription DataType="0" ChannelTag="0" Resolution="{resolution}" '
            f'NameOfMeasuredQuantity="" Min="0" Max="{2**resolution - 1}" Unit="" '
            f'LUTName={quoteattr(ch_name)} IsLUTInverted="0" BytesInc="{i * ny * nx * item}" BitInc="0"/>'
        )
    dims = []
    for dim_id, n, um, inc in (
        (1, nx, voxel_size_um[2], item),
        (2, ny, voxel_size_um[1], nx * item),
        (3, nz, voxel_size_um[0], nc * ny * nx * item),
    ):
        length = um * 1e-6 * (n - 1)
        dims.append(
            f'<DimensionDescription DimID="{dim_id}" NumberOfElements="{n}" Origin="0" '
            f'Length="{length!r}" Unit="m" BitInc="0" BytesInc="{inc}"/>'
        )
    size = nc * nz * ny * nx * item
    return (
        '<LMSDataContainerHeader Version="2">'
        '<Element Name="test.lif" Visibility="1" CopyOption="1" '
        'UniqueID="00000000-0000-0000-0000-000000000000">'
        '<Data><Experiment IsSavedFlag="1" Path=""/></Data>'
        '<Memory Size="0" MemoryBlockID="MemBlock_0"/>'
        "<Children>"
        f'<Element Name={quoteattr(name)} Visibility="1" CopyOption="1" '
        'UniqueID="00000000-0000-0000-0000-000000000001">'
        '<Data><Image TextDescription=""><ImageDescription>'
        f"<Channels>{''.join(channels)}</Channels>"
        f"<Dimensions>{''.join(dims)}</Dimensions>"
        "</ImageDescription></Image></Data>"
        f'<Memory Size="{size}" MemoryBlockID={quoteattr(block_id)}/>'
        "<Children/></Element>"
        "</Children></Element></LMSDataContainerHeader>"
    )


def _memory_block(block_id: str, data: bytes) -> bytes:
    ident = block_id.encode("utf-16-le")
    return struct.pack("<IIBQBI", _MAGIC, 0, _MARK, len(data), _MARK, len(block_id)) + ident + data


def write_lif_bytes(xml: str, blocks: Sequence[tuple[str, bytes]]) -> bytes:
    """A LIF file from its XML header and memory blocks ``(id, data)``."""
    text = xml.encode("utf-16-le")
    n_units = len(text) // 2
    header = struct.pack("<IIBI", _MAGIC, 2 * n_units + 5, _MARK, n_units) + text
    return header + b"".join(_memory_block(i, d) for i, d in blocks)


def write_lif(
    path: str | os.PathLike,
    array: np.ndarray,
    *,
    channel_names: Sequence[str],
    voxel_size_um: tuple[float, float, float],
) -> None:
    """Write ``array`` (``CZYX``; uint8 or uint16; 1 to 3 channels) as a one-image LIF file.

    ``voxel_size_um`` is (z, y, x) in micrometres; Z, Y and X need at least 2 elements each (a LIF dimension
    with one element has no pixel size).
    """
    array = np.asarray(array)
    if array.ndim != 4:
        raise ValueError(f"write_lif needs a CZYX array, got shape {array.shape}")
    if array.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ValueError(f"write_lif writes uint8 or uint16, not {array.dtype}")
    nc = array.shape[0]
    if not 1 <= nc <= 3 or len(channel_names) != nc:
        raise ValueError(f"write_lif needs 1 to 3 channels with one name each, got {nc} / {channel_names}")
    _, nz, ny, nx = (int(s) for s in array.shape)
    xml = lif_xml((nc, nz, ny, nx), array.dtype, channel_names=channel_names, voxel_size_um=voxel_size_um)
    data = np.ascontiguousarray(array.transpose(1, 0, 2, 3)).astype(array.dtype.newbyteorder("<")).tobytes()
    with open(path, "wb") as fh:
        fh.write(write_lif_bytes(xml, [("MemBlock_0", b""), ("MemBlock_1", data)]))
