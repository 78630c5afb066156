"""Commands: organelles from one dye (make-masks, segment, train-catalog) and quantify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stainfree.cli._app import CLUSTER, SCHEDULER, app, echo_job, friendly


# ----- organelles: make-masks, segment, train-catalog -------------------------------------------------------
@app.command("make-masks")
@friendly
def make_masks_cmd(
    in_dir: Annotated[Path, typer.Argument(help="Folder of colocalization images (Nile Red + GFP).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the <name>_mask.ome.tif files.")],
    bleed: Annotated[float, typer.Option(help="Bleed-through coefficient r of G - r*Y.")] = 0.05,
    ld_mask: Annotated[
        Path | None,
        typer.Option(
            "--ld-mask",
            help="Lipid droplets to zero: a mask, an LD probability map or a segment output (file, or folder "
            "of same names).",
        ),
    ] = None,
    ld_bundle: Annotated[
        Path | None,
        typer.Option("--ld-bundle", help="LD network run on each image; its droplets are zeroed first."),
    ] = None,
    ld_threshold: Annotated[
        float, typer.Option("--ld-threshold", help="Threshold of an LD probability map or LD network.")
    ] = 0.5,
    method: Annotated[str, typer.Option(help="'threshold' (automatic local) or 'fgnet'.")] = "threshold",
    fgnet: Annotated[Path | None, typer.Option(help="FG-net bundle for --method fgnet.")] = None,
) -> None:
    """Ground-truth masks from colocalization images: bleed-through subtraction, LD zeroing, foreground."""
    from stainfree import api

    paths = api.make_masks(
        in_dir,
        out,
        method=method,
        bleed=bleed,
        ld_mask=ld_mask,
        fgnet=fgnet,
        ld_threshold=ld_threshold,
        ld_bundle=ld_bundle,
    )
    for p in paths:
        typer.echo(str(p))


@app.command("segment")
@friendly
def segment_cmd(
    nilered_image: Annotated[Path, typer.Argument(help="Nile Red image with yellow and red channels.")],
    bundles: Annotated[
        list[Path], typer.Option("--bundles", "-b", help="Folder of catalog bundles, or bundles.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    catalog: Annotated[str | None, typer.Option(help="Catalog name or YAML (label priority).")] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Probability threshold of every binary net (default: each bundle's own, chosen on "
            "validation at export; 0.5 for older bundles)."
        ),
    ] = None,
    tta: Annotated[
        bool,
        typer.Option("--tta", help="Test-time augmentation: average 8 flipped/turned views (8x the time)."),
    ] = False,
    alignment: Annotated[
        str,
        typer.Option(
            "--alignment",
            help="Red onto yellow for the written intensity: auto, none, or a shift Z,Y,X in pixels "
            "(each network aligns its input as its bundle says).",
        ),
    ] = "auto",
    scheduler: Annotated[str | None, SCHEDULER] = None,
    cluster: Annotated[str | None, CLUSTER] = None,
    block_voxels: Annotated[
        int | None,
        typer.Option(
            "--block-voxels",
            help="Jobs: segment one image as blocks of at most this many voxels with their halo (the masks "
            "and label map as an OME-Zarr whose chunks are the blocks; no overlay).",
        ),
    ] = None,
    no_pyramid: Annotated[
        bool,
        typer.Option(
            "--no-pyramid",
            help="Jobs: no multiscale levels in an OME-Zarr written as blocks (default: halved until the "
            "smaller of Y and X is at most 512).",
        ),
    ] = False,
) -> None:
    """Segment 15 compartments from one Nile Red image: masks (15 named channels), label map, overlay PNG.

    The input may also be an HCS OME-Zarr plate, a folder or a quoted glob: one job, a subfolder per position.
    With --cluster / --scheduler one image larger than a block (or any, with --block-voxels) is segmented as
    blocks on the cluster.
    """
    from stainfree import api
    from stainfree.errors import InputError

    align: str | tuple[float, float, float] = alignment
    if alignment not in ("auto", "none"):
        try:
            z, y, x = (float(v) for v in alignment.split(","))
        except ValueError:
            raise InputError(alignment, "--alignment must be auto, none or Z,Y,X (pixels)") from None
        align = (z, y, x)
    target = bundles[0] if len(bundles) == 1 else bundles
    if scheduler or cluster or block_voxels or api.input_layout(nilered_image) != "file":
        result = api.segment_job(
            str(nilered_image),
            target,
            out,
            scheduler=scheduler,
            cluster=cluster,
            catalog=catalog,
            threshold=threshold,
            tta=tta,
            alignment=align,
            block_voxels=block_voxels,
            pyramid_levels=0 if no_pyramid else None,
        )
        echo_job(result)
        return
    paths = api.segment(
        nilered_image,
        target,
        out,
        catalog=catalog,
        threshold=threshold,
        progress=True,
        tta=tta,
        alignment=align,
    )
    for key, p in paths.items():
        typer.echo(f"{key}: {p}")


@app.command("train-catalog")
@friendly
def train_catalog_cmd(
    simulation: Annotated[Path, typer.Argument(help="Simulator output folder (or its manifest.csv).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the <NET>.stainfree bundles.")],
    structures: Annotated[
        list[str] | None, typer.Option("--structure", "-s", help="Network or compartment to train.")
    ] = None,
    steps: Annotated[int, typer.Option(help="Training steps per network.")] = 2000,
    dims: Annotated[int | None, typer.Option(help="2 or 3 (default: the catalog's).")] = None,
    input_transform: Annotated[
        str | None, typer.Option(help="'ratiometric' or 'intensity_only' (default: the catalog's).")
    ] = None,
    ratio_normalization: Annotated[
        str | None,
        typer.Option(
            "--ratio-normalization",
            help="Ratio channel scaling: 'fixed' (absolute R/Y 0..3 -> 0..1), 'median' (over the field's "
            "median ratio) or 'image' (z-score per image); default: the catalog's ('fixed').",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoints.")] = False,
) -> None:
    """Train the organelle catalog networks on simulated Nile Red fields."""
    from stainfree import api

    overrides: dict = {}
    if dims is not None:
        overrides["spatial_dims"] = dims
    if input_transform is not None:
        overrides["input_transform"] = input_transform
    if ratio_normalization is not None:
        overrides["ratio_normalization"] = ratio_normalization
    paths = api.train_catalog(
        simulation, out, structures=structures, max_steps=steps, resume=resume, progress=True, **overrides
    )
    for p in paths:
        typer.echo(str(p))


# ----- quantification: quantify -----------------------------------------------------------------------------
@app.command("quantify")
@friendly
def quantify_cmd(
    masks: Annotated[
        str,
        typer.Argument(
            help="Label map, 15-channel mask stack or output folder of stainfree segment (time-lapses too), "
            "instance stack or simulator field."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for tables (CSV + Parquet) and figures.")],
    nilered: Annotated[
        Path | None, typer.Option(help="Nile Red image (yellow, red): per-object intensity and ratio.")
    ] = None,
    cells: Annotated[Path | None, typer.Option(help="Cell-id map (0 = outside).")] = None,
    voxel_size: Annotated[
        tuple[float, float, float] | None,
        typer.Option("--voxel-size", help="Voxel size Z Y X in um (overrides the file's)."),
    ] = None,
    min_size: Annotated[int | None, typer.Option("--min-size", help="Smallest object in voxels.")] = None,
    contact_nm: Annotated[
        float | None, typer.Option("--contact-nm", help="Contact distance in nm (default: touching voxels).")
    ] = None,
    frame_interval: Annotated[
        float | None, typer.Option("--frame-interval", help="Seconds between frames of a time-lapse.")
    ] = None,
    names: Annotated[
        str | None, typer.Option(help="Comma-separated names of label values 1..n or of the mask channels.")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(help="Force the input kind: labels, masks or instances (one channel = one structure)."),
    ] = None,
    link: Annotated[
        str | None,
        typer.Option(
            help="Time-lapse linking: overlap (max IoU, fission / fusion from overlaps), centroid (nearest), "
            "id (persistent ids), laptrack (gap closing, split / merge)."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="QuantifyConfig YAML.")] = None,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Write tables only.")] = False,
    extra_channel: Annotated[
        list[str] | None,
        typer.Option(
            "--extra-channel",
            help="Measured channel FILE:NAME made a structure (Otsu threshold) of the objects and contact "
            "tables (repeatable).",
        ),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            help="Per-group tables and figures: 'phase' (simulator's field.json or a manifest column) or any "
            "manifest column.",
        ),
    ] = None,
    scheduler: Annotated[str | None, SCHEDULER] = None,
    cluster: Annotated[str | None, CLUSTER] = None,
    block_voxels: Annotated[
        int | None,
        typer.Option(
            "--block-voxels",
            min=1,
            help="Quantify one large mask image as blocks of at most this many voxels on Dask (resumable; "
            "the tables equal the in-memory ones).",
        ),
    ] = None,
    large_object_voxels: Annotated[
        int | None,
        typer.Option(
            "--large-object-voxels",
            min=1,
            help="With blocks: measure objects whose box holds more voxels block by block, in bounded memory "
            "(surface and sphericity then agree to ~1e-7).",
        ),
    ] = None,
) -> None:
    """Count and measure organelles, their contacts and, for time-lapses, contact events.

    A folder of mask images (or of segment job outputs) or a quoted glob is one job: a subfolder per position.
    """
    import warnings

    from stainfree import api
    from stainfree.config import QuantifyConfig, load_yaml
    from stainfree.workflows.compose import parse_extra_channel

    extras = [parse_extra_channel(s) for s in extra_channel or []]
    cfg = load_yaml(QuantifyConfig, config) if config is not None else QuantifyConfig()
    if min_size is not None:
        cfg.min_size_voxels = min_size
    if contact_nm is not None:
        cfg.contact_distance_nm = contact_nm
    if frame_interval is not None:
        cfg.frame_interval_s = frame_interval
    if no_figures:
        cfg.figures = False
    if link is not None:
        from stainfree.config import validate

        cfg = validate(QuantifyConfig, {**cfg.model_dump(), "link_method": link}, source="--link")
    if scheduler or cluster or block_voxels or large_object_voxels or _many_masks(masks):
        from stainfree.errors import InputError

        if nilered is not None or cells is not None or names or kind or voxel_size or extras or group_by:
            raise InputError(masks, "a quantify job takes --config, --min-size, --contact-nm, --link only")
        echo_job(
            api.quantify_job(
                masks,
                out,
                scheduler=scheduler,
                cluster=cluster,
                config=cfg,
                block_voxels=block_voxels,
                large_object_voxels=large_object_voxels,
            )
        )
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tables = api.quantify(
            masks,
            out,
            nilered=nilered,
            cells=cells,
            voxel_size_um=voxel_size,
            names=[n.strip() for n in names.split(",")] if names else None,
            kind=kind,
            config=cfg,
            progress=True,
            extra_channels=extras,
            group_by=group_by,
        )
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    s = tables["structures"]
    counts = s.groupby("structure", sort=False)["count"].mean()
    shown = ", ".join(f"{k} {v:g}" for k, v in counts.items() if v > 0) or "none"
    typer.echo(f"objects per structure: {shown}")
    typer.echo(f"contact events: {len(tables['contact_events'])}")
    if group_by is not None:
        g = tables["groups"]
        per_group = g.drop_duplicates(group_by).set_index(group_by)["cells"]
        typer.echo(f"cells per {group_by}: " + ", ".join(f"{k} {v}" for k, v in per_group.items()))
    typer.echo(f"wrote tables and figures to {out}")


def _many_masks(masks: str) -> bool:
    """A glob, or a folder that is not one simulated data set or field nor a segment output: a job."""
    from stainfree import api

    layout = api.input_layout(masks)
    if layout != "folder":
        return layout == "glob"
    folder = Path(masks)
    single = ("manifest.csv", "field.json", "instances.ome.tif", "labels.ome.tif")
    segment_output = any(folder.glob("*_masks.ome.tif")) or any(folder.glob("*_masks.ome.zarr"))
    return not segment_output and not any((folder / name).is_file() for name in single)
