"""Commands: demo, info, simulate, and virtual staining (manifest, train, pretrain, predict, evaluate)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from stainfree.cli._app import CLUSTER, SCHEDULER, app, echo_job, friendly


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
        str | None,
        typer.Option("--microscope", help="Microscope profile: spinning_disk, widefield or sdsim."),
    ] = None,
    cell_shape: Annotated[
        str | None, typer.Option("--cell-shape", help="round, elongated, spread or mixed.")
    ] = None,
    gfp: Annotated[
        str | None, typer.Option("--gfp", help="Structure shown in an extra Nile Red 'gfp' channel.")
    ] = None,
    phases: Annotated[
        str | None,
        typer.Option(
            "--phases",
            help="Mitotic phases drawn per cell, comma-separated (interphase, prophase, metaphase, anaphase, "
            "telophase) or 'all'.",
        ),
    ] = None,
    events: Annotated[
        tuple[int, int, int] | None,
        typer.Option(
            "--events",
            help="Time-lapse events per field: FISSIONS FUSIONS CONTACTS (mitochondria; lipid droplet / "
            "lysosome contacts), truth in field.json and events.csv; needs --n-frames >= 6.",
        ),
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
        "phases": None
        if phases is None
        else (
            ["interphase", "prophase", "metaphase", "anaphase", "telophase"]
            if phases.strip() == "all"
            else [p.strip() for p in phases.split(",") if p.strip()]
        ),
        "events": events,
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
    ] = 0.1875,
    bf16: Annotated[
        bool | None,
        typer.Option(
            "--bf16/--fp32",
            help="bfloat16 autocast or float32; default: bf16 where the GPU/CPU computes it natively.",
        ),
    ] = None,
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile the network (eager if compiling fails).")
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
    scheduler: Annotated[str | None, SCHEDULER] = None,
    cluster: Annotated[str | None, CLUSTER] = None,
    block_voxels: Annotated[
        int | None,
        typer.Option("--block-voxels", help="Jobs: largest block with its halo (voxels); blocks are chunks."),
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
    """Predict fluorescence (or masks) from a label-free image; several bundles make a multi-channel image.

    The input may also be an HCS OME-Zarr plate, a folder or a quoted glob: one job, the output mirrors it.
    """
    from stainfree import api
    from stainfree.errors import InputError

    if len(paths) < 2:
        raise InputError(" ".join(map(str, paths)), "give at least one bundle and the input image")
    if scheduler or cluster or block_voxels or api.input_layout(paths[-1]) != "file":
        result = api.predict_job(
            [str(p) for p in paths[:-1]],
            str(paths[-1]),
            out,
            scheduler=scheduler,
            cluster=cluster,
            tile=list(tile) if tile else None,
            overlap=overlap,
            sw_batch_size=batch,
            bf16=bf16,
            device=device,
            block_voxels=block_voxels,
            pyramid_levels=0 if no_pyramid else None,
            progress=not quiet,
            tta=tta,
            uncertainty=uncertainty,
        )
        echo_job(result)
        return
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
        compile=compile,
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
