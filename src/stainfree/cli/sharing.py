"""Commands: fine-tune, export, and cross-modal registration (register, simulate-clem)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stainfree.cli._app import app, friendly


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
    refine: Annotated[
        str,
        typer.Option(
            "--refine",
            help="After the template match: 'flow' (optical flow + similarity fit; structure everywhere) "
            "or 'ncc' (maximize the correlation; sparse targets such as a few labelled nuclei).",
        ),
    ] = "flow",
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
    if refine not in ("flow", "ncc"):
        raise InputError("--refine", f"is 'flow' or 'ncc', not {refine!r}")
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
        refine="ncc" if refine == "ncc" else "flow",
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
