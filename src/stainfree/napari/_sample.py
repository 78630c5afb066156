"""Sample data: a small digital-cell field from the stainfree simulator (bright-field, Nile Red, masks)."""

from __future__ import annotations

from stainfree.napari._layers import LayerData, image_layers, label_map_layer

#: Size of the sample field (z, y, x) in voxels: small enough to simulate in about a second.
SAMPLE_SHAPE = (16, 160, 160)


def digital_cell(seed: int = 0) -> list[LayerData]:
    """One simulated field: bright-field, Nile Red (yellow, red) and the 15-compartment label map.

    Parameters
    ----------
    seed : int
        Simulator seed (the same seed gives the same field).

    Returns
    -------
    list of LayerData
        Image layers ``brightfield`` and ``nilered [yellow]``/``nilered [red]``, Labels layer ``labels``.
    """
    import tempfile
    from pathlib import Path

    import numpy as np

    from stainfree.api import simulate
    from stainfree.io.readers import read_image

    with tempfile.TemporaryDirectory(prefix="stainfree-sample-") as tmp:
        simulate(
            tmp,
            n_fields=1,
            shape=SAMPLE_SHAPE,
            seed=seed,
            cells_per_field=(1, 1),
            targets=["dna"],
            n_frames=1,
        )
        field = Path(tmp) / "field_000"
        layers: list[LayerData] = []
        for name in ("brightfield", "nilered"):
            array, meta = read_image(field / f"{name}.ome.tif")
            layers.extend(
                image_layers(np.asarray(array), meta.axes, meta.voxel_size_um, meta.channel_names, name)
            )
        labels, meta = read_image(field / "labels.ome.tif")
        layers.append(label_map_layer(np.asarray(labels), meta.voxel_size_um, "labels"))
    return layers
