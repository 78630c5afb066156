"""Command: compose (in-silico multi-colour image, composite and movie from segmented masks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stainfree.cli._app import app, friendly


@app.command("compose")
@friendly
def compose_cmd(
    masks: Annotated[
        str,
        typer.Argument(help="Masks: segment's 15-channel masks ((T)CZYX), a label map or a simulator field."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the image, composite and movie.")],
    nilered: Annotated[
        Path | None,
        typer.Option(help="Nile Red image (yellow, red) or one-channel intensity; default: the field's."),
    ] = None,
    extra_channel: Annotated[
        list[str] | None,
        typer.Option("--extra-channel", help="Measured channel FILE:NAME carried along (repeatable)."),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="ome-tiff, ome-zarr or both.")] = "ome-tiff",
    movie: Annotated[
        str, typer.Option("--movie", help="Time-lapse movie: mp4 (H.264; GIF without ffmpeg), gif or none.")
    ] = "mp4",
    fps: Annotated[float, typer.Option("--fps", help="Movie frames per second.")] = 4.0,
    voxel_size: Annotated[
        tuple[float, float, float] | None,
        typer.Option("--voxel-size", help="Voxel size Z Y X in um (overrides the file's)."),
    ] = None,
) -> None:
    """In-silico multi-colour image: a channel per compartment (mask x Nile Red), composite, movie."""
    from stainfree import api
    from stainfree.workflows.compose import parse_extra_channel

    extras = [parse_extra_channel(s) for s in extra_channel or []]
    paths = api.compose(
        masks,
        out,
        nilered=nilered,
        extra_channels=extras,
        format=format,
        movie=None if movie == "none" else movie,
        fps=fps,
        voxel_size_um=voxel_size,
    )
    for key, p in paths.items():
        typer.echo(f"{key}: {p}")
