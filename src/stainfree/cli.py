"""The ``stainfree`` command line: a thin typer shell over :mod:`stainfree.api`.

Heavy libraries are imported inside the commands so that ``stainfree --help`` answers at once. Errors that are
the user's to fix (:class:`stainfree.errors.StainfreeError`) are printed as one line and exit with code 2.
"""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="stainfree",
    help="In-silico labeling of live cells: virtual staining, organelles from one dye, quantification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _start() -> None:
    """In-silico labeling of live cells: virtual staining, organelles from one dye, quantification."""
    from stainfree.runtime import keep_freed_memory

    keep_freed_memory()  # large tensors reused instead of faulted in again for every tile and batch


#: errno -> what it means for the place written to (a full disk, a read-only place, a file size limit).
_WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on the device; nothing was written under the final name",
    errno.EDQUOT: "disk quota exceeded; nothing was written under the final name",
    errno.EFBIG: "file too large for this place (file size limit); nothing was written under the final name",
    errno.EROFS: "read-only file system; choose another output place",
    errno.EACCES: "permission denied; choose a place you can write to",
    errno.EPERM: "operation not permitted; choose a place you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOENT: "no such file or folder",
}


def os_error_line(exc: OSError) -> str | None:
    """One line naming the path and the problem for the OS errors a user can act on, else None."""
    problem = _WRITE_ERRNOS.get(exc.errno or -1)
    if problem is None:
        return None
    where = exc.filename if exc.filename is not None else "output"
    return f"{where}: {problem}"


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command; a StainfreeError, a full disk, a read-only place or too little memory becomes one line
    on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from stainfree.errors import StainfreeError

        try:
            return fn(*args, **kwargs)
        except StainfreeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except OSError as exc:
            line = os_error_line(exc)
            if line is None:
                raise
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(code=2) from None
        except MemoryError:
            typer.echo("error: out of memory; try a smaller image, smaller tiles or --batch 1", err=True)
            raise typer.Exit(code=2) from None

    return wrapper


# ----- demo: end to end on simulated cells, HTML report -----------------------------------------------------
@app.command()
@friendly
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo_output"),
    config: Annotated[
        Path | None, typer.Option("--config", help="DemoConfig YAML (sizes and training budgets).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Run stainfree end to end on simulated cells and write OUT/report.html."""
    from stainfree import api

    report = api.demo(out, config, progress=not quiet)
    typer.echo(str(report))


# ----- inspecting data: info --------------------------------------------------------------------------------
def _fmt_number(value: Any) -> str:
    if value is None:
        return "?"
    value = float(value)
    if value != value:  # NaN
        return "-"
    return str(int(value)) if value.is_integer() else f"{value:.4g}"


@app.command()
@friendly
def info(
    files: Annotated[
        list[str], typer.Argument(help="Image files, OME-Zarr folders or quoted glob patterns of 2D slices.")
    ],
    max_bytes: Annotated[
        int | None,
        typer.Option("--max-bytes", help="Largest chunk read into memory (default: the memory available)."),
    ] = None,
) -> None:
    """Show format, axes, shape, dtype, voxel size, channels and intensity range of images; flag problems."""
    from rich.console import Console
    from rich.table import Table

    from stainfree import api

    table_df = api.info(files, max_bytes=max_bytes)
    table = Table(title="stainfree info")
    columns = ("path", "format", "axes", "shape", "dtype", "voxel z,y,x (um)", "channels", "min", "max")
    for column in (*columns, "status"):
        table.add_column(column, overflow="fold")
    for row in table_df.to_dict("records"):
        voxel = ", ".join(_fmt_number(v) for v in row["voxel_size_um"]) if row["voxel_size_um"] else ""
        table.add_row(
            str(row["path"]),
            str(row["format"]),
            str(row["axes"]),
            " x ".join(str(s) for s in row["shape"]) if row["shape"] else "",
            str(row["dtype"]),
            voxel,
            ", ".join(row["channels"]) if row["channels"] else "",
            "" if row["min"] is None else _fmt_number(row["min"]),
            "" if row["max"] is None else _fmt_number(row["max"]),
            "ok" if row["ok"] else f"[red]{row['problem']}[/red]",
        )
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    bad = table_df[~table_df["ok"]]
    for failed in bad.itertuples(index=False):
        typer.echo(f"error: {failed.path}: {failed.problem}", err=True)
    if len(bad):
        raise typer.Exit(code=2)


# ----- digital cell: simulate -------------------------------------------------------------------------------
@app.command()
@friendly
def simulate(
    out_dir: Annotated[Path, typer.Argument(help="Output folder (field_NNN/ folders, manifest.csv).")],
    config: Annotated[Path | None, typer.Option("--config", help="SimulationConfig YAML file.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    n_fields: Annotated[int | None, typer.Option("--n-fields", help="Number of fields.")] = None,
    shape: Annotated[
        tuple[int, int, int] | None, typer.Option("--shape", help="Field size Z Y X in voxels.")
    ] = None,
    n_frames: Annotated[int | None, typer.Option("--n-frames", help="Time points per field.")] = None,
    microscope: Annotated[
        str | None, typer.Option("--microscope", help="Microscope profile: spinning_disk or widefield.")
    ] = None,
    cell_shape: Annotated[
        str | None, typer.Option("--cell-shape", help="round, elongated, spread or mixed.")
    ] = None,
    gfp: Annotated[
        str | None, typer.Option("--gfp", help="Structure shown in an extra Nile Red 'gfp' channel.")
    ] = None,
) -> None:
    """Simulate digital cells: bright-field, fluorescence, Nile Red and exact 15-compartment masks."""
    from stainfree import api

    options = {
        "seed": seed,
        "n_fields": n_fields,
        "shape": shape,
        "n_frames": n_frames,
        "microscope": microscope,
        "cell_shape": cell_shape,
        "gfp_structure": gfp,
    }
    overrides = {k: v for k, v in options.items() if v is not None}
    manifest = api.simulate(out_dir, config, progress=True, **overrides)
    typer.echo(f"wrote {manifest}")


# ----- virtual staining: manifest, train, predict, evaluate -------------------------------------------------
@app.command("manifest")
@friendly
def manifest_cmd(
    signal: Annotated[str, typer.Argument(help="Folder or glob pattern of the input (label-free) images.")],
    target: Annotated[str, typer.Argument(help="Folder or glob pattern of the target images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest CSV to write.")] = Path("manifest.csv"),
    test_fraction: Annotated[float, typer.Option(help="Fraction of pairs in the test split.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    signal_channels: Annotated[
        str | None, typer.Option(help="Input channels, names or indices separated by ';'.")
    ] = None,
    target_channels: Annotated[
        str | None, typer.Option(help="Target channels, names or indices separated by ';'.")
    ] = None,
) -> None:
    """Pair input and target images into a training manifest (CSV) with a seeded train/test split."""
    from stainfree import api

    path = api.make_manifest(
        signal,
        target,
        out,
        test_fraction=test_fraction,
        seed=seed,
        signal_channels=signal_channels,
        target_channels=target_channels,
    )
    typer.echo(str(path))


@app.command("train")
@friendly
def train_cmd(
    config: Annotated[Path | None, typer.Argument(help="Training job YAML (see --write-default).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from <output_dir>/checkpoints/last.ckpt.")
    ] = False,
    max_steps: Annotated[int | None, typer.Option(help="Override train.max_steps.")] = None,
    max_time: Annotated[
        str | None, typer.Option("--max-time", help="Override train.max_time: seconds or e.g. 15m, 1h30m.")
    ] = None,
    write_default: Annotated[
        Path | None, typer.Option("--write-default", help="Write a default job YAML to this path and exit.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a network (virtual staining or segmentation) from a job YAML; prints the model bundle path."""
    from stainfree import api

    if write_default is not None:
        typer.echo(str(api.write_default_training_job(write_default)))
        return
    if config is None:
        from stainfree.errors import ConfigError

        raise ConfigError("give a training job YAML, or --write-default PATH to create one")
    typer.echo(
        str(api.train(config, resume=resume, max_steps=max_steps, max_time=max_time, progress=not quiet))
    )


@app.command("pretrain")
@friendly
def pretrain_cmd(
    images: Annotated[list[str], typer.Argument(help="Label-free images: files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the pretrained bundle and its run.")],
    job: Annotated[
        Path | None,
        typer.Option("--job", help="The training job YAML this prepares (input mode, channels, network)."),
    ] = None,
    max_time: Annotated[
        str | None, typer.Option("--max-time", help="Time budget: seconds or e.g. 10m (default: the job's).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Steps (default: the job's).")] = None,
    mask_fraction: Annotated[
        float, typer.Option("--mask-fraction", help="Share of each input patch hidden under noise.")
    ] = 0.5,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Self-supervised pretraining on label-free images alone; start training from it with init_from."""
    from stainfree import api

    bundle = api.pretrain(
        images,
        out,
        job=job,
        max_time=max_time,
        max_steps=max_steps,
        mask_fraction=mask_fraction,
        progress=not quiet,
    )
    typer.echo(str(bundle))


@app.command("predict")
@friendly
def predict_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(help="One or more model bundles (<name>.stainfree), then the input image."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .ome.tif or .ome.zarr.")],
    tile: Annotated[
        tuple[int, int, int] | None,
        typer.Option("--tile", help="Tile size Z Y X (2D models use Y X); default: from the bundle."),
    ] = None,
    overlap: Annotated[
        float, typer.Option("--overlap", help="Fraction of a tile shared with neighbours.")
    ] = 0.25,
    bf16: Annotated[
        bool, typer.Option("--bf16", help="bfloat16 autocast (faster on recent GPUs/CPUs).")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:1.")] = "cpu",
    batch: Annotated[int, typer.Option("--batch", help="Tiles per forward pass.")] = 1,
    tta: Annotated[
        bool,
        typer.Option("--tta", help="Test-time augmentation: average 8 flipped/turned views (8x the time)."),
    ] = False,
    uncertainty: Annotated[
        bool,
        typer.Option("--uncertainty", help="With --tta: add the spread of the views as extra channels."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Predict fluorescence (or masks) from a label-free image; several bundles make a multi-channel image."""
    from stainfree import api
    from stainfree.errors import InputError

    if len(paths) < 2:
        raise InputError(" ".join(map(str, paths)), "give at least one bundle and the input image")
    written = api.predict(
        [str(p) for p in paths[:-1]],
        paths[-1],
        out,
        tile=list(tile) if tile else None,
        overlap=overlap,
        sw_batch_size=batch,
        bf16=bf16,
        device=device,
        progress=not quiet,
        tta=tta,
        uncertainty=uncertainty,
    )
    for path in written.values():
        typer.echo(str(path))


@app.command("evaluate")
@friendly
def evaluate_cmd(
    pred: Annotated[
        list[str], typer.Option("--pred", help="Prediction image(s), folder or glob (repeatable).")
    ],
    target: Annotated[
        list[str], typer.Option("--target", help="Target image(s), folder or glob (repeatable).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for evaluation.csv and figures.")],
    task: Annotated[str, typer.Option("--task", help="regression, binary or multiclass.")] = "regression",
    clean: Annotated[
        list[str] | None, typer.Option("--clean", help="Noise-free targets (simulator): exact C_max.")
    ] = None,
    controls: Annotated[
        list[str] | None, typer.Option("--controls", help="Unlabeled control images: C_max from their noise.")
    ] = None,
    signal: Annotated[
        list[str] | None, typer.Option("--signal", help="Label-free inputs, for the slice figure.")
    ] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Binary probability threshold.")] = 0.5,
) -> None:
    """Score predictions against targets: Pearson r, NMSE, r/C_max or segmentation scores; CSV + figures."""
    from stainfree import api

    table = api.evaluate(
        pred,
        target,
        out,
        task=task,
        clean_targets=clean,
        controls=controls,
        signals=signal,
        threshold=threshold,
    )
    numeric = [c for c in ("pearson_r", "r_over_cmax", "nmse", "f1", "iou", "moc") if c in table.columns]
    summary = table.groupby("structure", sort=False)[numeric].mean()
    typer.echo(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"wrote {out / 'evaluation.csv'}")


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
    threshold: Annotated[float, typer.Option(help="Probability threshold of binary nets.")] = 0.5,
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
) -> None:
    """Segment 15 compartments from one Nile Red image: masks (15 named channels), label map, overlay PNG."""
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
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoints.")] = False,
) -> None:
    """Train the organelle catalog networks on simulated Nile Red fields."""
    from stainfree import api

    overrides: dict = {}
    if dims is not None:
        overrides["spatial_dims"] = dims
    if input_transform is not None:
        overrides["input_transform"] = input_transform
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
            help="Label map, 15-channel mask stack (stainfree segment), instance stack or simulator field."
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
        typer.Option(help="Time-lapse linking: overlap (max IoU), centroid (nearest), id (persistent ids)."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="QuantifyConfig YAML.")] = None,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Write tables only.")] = False,
) -> None:
    """Count and measure organelles, their contacts and, for time-lapses, contact events."""
    import warnings

    from stainfree import api
    from stainfree.config import QuantifyConfig, load_yaml

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
        )
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    s = tables["structures"]
    counts = s.groupby("structure", sort=False)["count"].mean()
    shown = ", ".join(f"{k} {v:g}" for k, v in counts.items() if v > 0) or "none"
    typer.echo(f"objects per structure: {shown}")
    typer.echo(f"contact events: {len(tables['contact_events'])}")
    typer.echo(f"wrote tables and figures to {out}")


# ----- fine-tune: any bundle on the user's own images -------------------------------------------------------
@app.command("fine-tune")
@friendly
def fine_tune_cmd(
    bundle: Annotated[
        Path, typer.Argument(help="The bundle to start from (.stainfree or exported package).")
    ],
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV with signal and target columns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("fine_tuned"),
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="Training steps (default 200; with --max-time: as many as fit)."),
    ] = None,
    max_time: Annotated[
        str | None, typer.Option("--max-time", help="Training time budget, e.g. 10m or 1h.")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 1e-4,
    freeze_encoder: Annotated[bool, typer.Option("--freeze-encoder", help="Train only the decoder.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Name of the new bundle.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fine-tune BUNDLE (regression or segmentation) on MANIFEST; writes OUT/<name>.stainfree."""
    from stainfree import api

    extra = {"max_time": max_time} if max_time else {}
    tuned = api.fine_tune(
        bundle,
        manifest,
        out,
        max_steps=steps if steps is not None or max_time else 200,
        lr=lr,
        freeze_encoder=freeze_encoder,
        name=name,
        progress=not quiet,
        **extra,
    )
    typer.echo(str(tuned))


# ----- export: bioimage.io package or ONNX ------------------------------------------------------------------
@app.command("export")
@friendly
def export_cmd(
    bundle: Annotated[Path, typer.Argument(help="The .stainfree bundle.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("export"),
    format: Annotated[
        str, typer.Option("--format", "-f", help="bioimageio (model package, spec 0.5) or onnx.")
    ] = "bioimageio",
    author: Annotated[
        list[str] | None, typer.Option("--author", help="Author name for the package (repeatable).")
    ] = None,
    license: Annotated[str, typer.Option("--license", help="SPDX license of the weights.")] = "CC-BY-4.0",
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Run bioimage.io's test of the written package.")
    ] = True,
) -> None:
    """Export BUNDLE as a bioimage.io model package or as ONNX (dynamic batch and spatial axes)."""
    from stainfree import api
    from stainfree.errors import InputError

    if format not in ("bioimageio", "onnx"):
        raise InputError(format, "unknown export format (use bioimageio or onnx)")
    result = api.export_model(bundle, out, format=format, authors=author, license=license)  # type: ignore[arg-type]
    typer.echo(f"wrote {result['path']}")
    typer.echo(f"onnx vs pytorch max abs difference: {result['onnx_max_abs_diff']:.3g}")
    if format == "bioimageio" and check:
        test = api.test_package(Path(str(result["path"])))
        typer.echo(f"bioimage.io test: {test['status']}")
        if test["status"] != "passed":
            raise InputError(
                str(result["path"]),
                "bioimage.io test failed: " + " | ".join(str(f) for f in test["failures"]),  # type: ignore[attr-defined]
            )


# ----- cross-modal registration: register, simulate-clem ---------------------------------------------------
@app.command("register")
@friendly
def register_cmd(
    paths: Annotated[
        list[Path], typer.Argument(help="One or more EM tiles, then the large target image (e.g. the IF).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", help="EM -> target model bundle (trained at the target's pixel size)."),
    ] = None,
    no_predict: Annotated[
        bool,
        typer.Option("--no-predict", help="Register the tiles as they are (same modality as the target)."),
    ] = False,
    tile_pixel: Annotated[
        float | None, typer.Option("--tile-pixel-um", help="Tile pixel size (um) when the files lack it.")
    ] = None,
    target_pixel: Annotated[
        float | None, typer.Option("--target-pixel-um", help="Target pixel size (um) when the file lacks it.")
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth", help='Known transforms, JSON {"<tile name>": {"matrix": 3x3}}: adds error_px.'
        ),
    ] = None,
    max_rotation: Annotated[
        float, typer.Option("--max-rotation", help="Largest tile rotation searched (degrees).")
    ] = 10.0,
    smooth: Annotated[
        float, typer.Option("--smooth", help="Gaussian sigma (target px) on prediction and target first.")
    ] = 0.0,
    device: Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda.")] = "cpu",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-tile lines.")] = False,
) -> None:
    """Register EM tiles in a large image: predict its modality from each tile, match, flow, fit."""
    from stainfree import api
    from stainfree.errors import InputError

    if len(paths) < 2:
        raise InputError(" ".join(map(str, paths)), "give at least one tile and the target image")
    for p in paths:
        if not p.exists():
            raise InputError(p, "no such file")
    written = api.register(
        paths[:-1],
        paths[-1],
        out,
        bundle=bundle,
        predict=not no_predict,
        tile_pixel_um=tile_pixel,
        target_pixel_um=target_pixel,
        truth=truth,
        max_rotation_deg=max_rotation,
        smooth=smooth,
        device=device,
        progress=not quiet,
    )
    import pandas as pd

    df = pd.read_csv(written["table"])
    n_conv = int(df["converged"].sum()) if "converged" in df else 0
    typer.echo(f"converged {n_conv} of {len(df)} tile(s); wrote {written['table']}")


@app.command("simulate-clem")
@friendly
def simulate_clem_cmd(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    n_tiles: Annotated[int, typer.Option("--n-tiles", help="EM tiles placed at random.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    size_um: Annotated[float, typer.Option("--size-um", help="Side of the IF field (um).")] = 51.2,
    training_fields: Annotated[
        int, typer.Option("--training-fields", help="Separate fields written as EM/IF training pairs.")
    ] = 0,
) -> None:
    """Simulate conjugate EM tiles and a myelin IF image with the known transforms (truth.json)."""
    from stainfree import api

    written = api.simulate_clem(
        out, n_tiles=n_tiles, seed=seed, size_um=size_um, training_fields=training_fields
    )
    for key, path in written.items():
        typer.echo(f"{key}: {path}")


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
