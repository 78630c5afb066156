"""The workflows of stainfree as short Python functions; the CLI only wraps these.

Each function wires the lower layers together and returns paths or tables. Heavy libraries are imported inside
the functions, so importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


# ----- foundation: demo and the report (owner: lead)  -------------------------------------------------------
# <api-foundation>
def demo(out_dir: str | Path = "demo_output", config: Any = None, *, progress: bool = True) -> Path:
    """Run stainfree end to end on simulated cells and write ``report.html``.

    Simulate fields of digital cells; train one virtual-staining model per structure (bright-field ->
    fluorescence); predict the held-out fields as a multi-structure composite; evaluate against the noisy and
    noise-free targets (r, NMSE, exact C_max); train a few organelle networks on Nile Red; segment the
    held-out fields and score them; quantify segmented and true organelles; write the figures and tables as
    one HTML report.

    Parameters
    ----------
    out_dir : path
        Output folder (data, models, predictions, evaluation, segmentation, quantification, report).
    config : DemoConfig or path to YAML, optional
        Sizes and budgets (defaults run in a few minutes on 2 CPU cores).
    progress : bool
        Print one line per step and show progress bars.

    Returns
    -------
    Path
        The report.
    """
    from stainfree.config import DemoConfig, resolve

    cfg = resolve(DemoConfig, config)
    if cfg.threads is None:
        return _demo_run(cfg, Path(out_dir), progress)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _demo_run(cfg, Path(out_dir), progress)
    finally:
        torch.set_num_threads(before)


def _demo_run(cfg: Any, out: Path, progress: bool) -> Path:
    """The steps of :func:`demo` (see there)."""
    import pandas as pd

    from stainfree.evaluate.figures import plot_segmentation_bars
    from stainfree.io.manifest import read_manifest
    from stainfree.io.writers import write_table
    from stainfree.report.html import Section, write_report

    timings: dict[str, float] = {}

    def step(name: str) -> Any:
        return _DemoStep(name, timings, progress)

    with step("simulate"):
        manifest = simulate(
            out / "data", n_fields=cfg.n_fields, shape=cfg.shape, seed=cfg.seed, targets=list(cfg.structures)
        )
        fields = read_manifest(manifest)
        held_out = fields[fields["split"] != "train"].reset_index(drop=True)
        montage = _demo_montage(manifest, out / "figures" / "digital_cell.png")

    with step("train virtual staining"):
        bundles = [
            _demo_train_staining(manifest, s, out / "models" / s, cfg, progress) for s in cfg.structures
        ]

    with step("predict"):
        predictions, merges = [], []
        for row in held_out.itertuples():
            res = predict(
                bundles, row.brightfield, out / "predictions" / f"{row.field}.ome.tif", progress=False
            )
            predictions.append(res["image"])
            merges.append(res.get("merge"))

    with step("evaluate"):
        staining = evaluate(
            predictions,
            list(held_out["fluorescence"]),
            out / "evaluation",
            clean_targets=list(held_out["fluorescence_clean"]),
            signals=list(held_out["brightfield"]),
        )

    sections = [
        Section(
            "The digital cell",
            f"{cfg.n_fields} simulated fields of {cfg.shape[0]} x {cfg.shape[1]} x {cfg.shape[2]} voxels "
            f"(seed {cfg.seed}); {len(held_out)} held out for testing. Bright-field planes through focus, "
            "fluorescence targets, Nile Red channels and the exact label map of the 15 compartments.",
            figures=[montage],
        ),
        Section(
            "Virtual staining",
            f"One fnet-style 3D U-Net per structure ({', '.join(cfg.structures)}), trained for "
            f"{cfg.staining_steps} steps on bright-field -> fluorescence patches, applied to the held-out "
            "fields with Gaussian-blended sliding windows. r is Pearson's correlation with the noisy target; "
            "C_max is the exact noise ceiling from the noise-free target, so r / C_max = 1 is as good as the "
            "data allow.",
            figures=[
                p
                for p in [
                    merges[0] if merges else None,
                    out / "evaluation" / "slices.png",
                    out / "evaluation" / "pearson_r.png",
                ]
                if p and Path(p).exists()
            ],
            tables=[("Per field and structure", staining)],
        ),
    ]

    if cfg.organelle_nets:
        with step("train organelle networks"):
            seg_bundles = train_catalog(
                manifest,
                out / "organelle_models",
                structures=list(cfg.organelle_nets),
                max_steps=cfg.organelle_steps,
                seed=cfg.seed,
                loss=cfg.organelle_loss,
                lr=cfg.organelle_lr,
                **_DEMO_ORGANELLE_NET,
            )
        with step("segment"):
            segmented = [
                segment(row.nilered, seg_bundles, out / "segmentation", name=row.field)
                for row in held_out.itertuples()
            ]
            trained = _demo_trained_compartments(cfg.organelle_nets)
            seg_scores = evaluate(
                [s["masks"] for s in segmented],
                list(held_out["labels"]),
                out / "segmentation" / "evaluation",
                task="binary",
            )
            seg_scores = seg_scores[seg_scores["structure"].isin(trained)].reset_index(drop=True)
            seg_eval = out / "segmentation" / "evaluation"
            write_table(seg_eval / "evaluation_trained.csv", seg_scores)
            plot_segmentation_bars(seg_scores, seg_eval / "segmentation_scores_trained.png")
        sections.append(
            Section(
                "Organelles from one dye",
                f"Catalog networks {', '.join(cfg.organelle_nets)} (2D attention U-Nets on Nile Red "
                f"intensity and emission ratio, {cfg.organelle_steps} steps each, loss "
                f"{cfg.organelle_loss or 'of the catalog'}, learning rate {cfg.organelle_lr:g}) segment the "
                "held-out fields. Scores are against the simulator's exact masks, for the compartments these "
                "networks cover, each as the catalog defines it (the cytosol includes the organelles in it, "
                "the nucleus its nuclear reticulum). This is a short CPU budget: benchmarks/segmentation.py "
                "trains all ten networks longer.",
                figures=[segmented[0]["overlay"], seg_eval / "segmentation_scores_trained.png"],
                tables=[("Per field and compartment", seg_scores)],
            )
        )
        if cfg.quantify:
            with step("quantify"):
                row = held_out.iloc[0]
                quant_dir = out / "quantification"
                pred_q = quantify(
                    segmented[0]["masks"], quant_dir / "segmented", nilered=row["nilered"], cells=row["cells"]
                )
                true_q = quantify(Path(row["labels"]).parent, quant_dir / "truth")
                comparison = _demo_compare_counts(pred_q["structures"], true_q["structures"], trained)
                write_table(quant_dir / "segmented_vs_truth.csv", comparison)
            sections.append(
                Section(
                    "Quantification",
                    f"Objects of {row['field']}: count, volume, sphericity and emission ratio per "
                    "compartment, and contacts between compartments, measured on the segmentation and on the "
                    "exact masks.",
                    figures=sorted((quant_dir / "segmented").glob("*.png"))
                    + sorted(p for p in (quant_dir / "truth").glob("*.png") if "contact" in p.name),
                    tables=[("Segmented vs true organelles", comparison)],
                )
            )

    timing_table = pd.DataFrame({"step": list(timings), "seconds": [round(v, 1) for v in timings.values()]})
    sections.append(Section("Run", f"Outputs in {out.resolve()}.", tables=[("Time per step", timing_table)]))
    from stainfree import __version__

    report = write_report(out / "report.html", "stainfree demo", sections, footer=f"stainfree {__version__}")
    if progress:
        from rich import print as rprint

        rprint(f"[bold green]report:[/] {report}")
    return report


#: Small organelle networks for the demo: 2D attention U-Nets, a few thousand pixels a patch.
_DEMO_ORGANELLE_NET: dict[str, Any] = {
    "spatial_dims": 2,
    "patch_shape": [64, 64],
    "depth": 3,  # the nucleus needs context: depth 2 called it cytosol
    "base_channels": 8,
}


class _DemoStep:
    """Times one step of the demo and prints its start and duration."""

    def __init__(self, name: str, timings: dict[str, float], verbose: bool) -> None:
        self.name, self.timings, self.verbose = name, timings, verbose

    def __enter__(self) -> None:
        import time

        self.start = time.perf_counter()
        if self.verbose:
            from rich import print as rprint

            rprint(f"[bold]stainfree demo:[/] {self.name} ...")

    def __exit__(self, *exc: Any) -> None:
        import time

        self.timings[self.name] = time.perf_counter() - self.start
        if self.verbose and exc[0] is None:
            from rich import print as rprint

            rprint(f"  done in {self.timings[self.name]:.1f} s")


def _demo_montage(manifest: Path, path: Path) -> Path:
    """Montage of the first simulated field (re-simulated from the recorded configuration, it is cheap)."""
    import json

    from stainfree.config import SimulationConfig, validate
    from stainfree.simulate import simulate_field
    from stainfree.simulate.preview import save_montage

    params = json.loads((manifest.parent / "simulation.json").read_text())
    cfg = validate(
        SimulationConfig, params.get("config", params), source=str(manifest.parent / "simulation.json")
    )
    return save_montage(simulate_field(cfg, 0), path)


def _demo_train_staining(manifest: Path, structure: str, out: Path, cfg: Any, progress: bool) -> Path:
    """Train one bright-field -> fluorescence model of the demo."""
    from stainfree.config import DataConfig, ModelConfig, TrainConfig, TrainingJob

    job = TrainingJob(
        name=structure,
        output_dir=out,
        data=DataConfig(
            manifest=manifest,
            signal_column="brightfield",
            target_column="fluorescence",
            target_channels=[structure],
            patch_shape=list(cfg.staining_patch),
            voxel_size_um=cfg.staining_voxel_size_um,
        ),
        model=ModelConfig(
            architecture="fnet_unet", depth=cfg.staining_depth, base_channels=cfg.staining_channels
        ),
        train=TrainConfig(
            max_steps=cfg.staining_steps,
            batch_size=cfg.batch_size,
            val_every_n_steps=max(1, cfg.staining_steps // 3),
            checkpoint_every_n_steps=max(1, cfg.staining_steps // 3),
            seed=cfg.seed,
        ),
    )
    return train(job, progress=progress)


def _demo_trained_compartments(nets: list[str]) -> list[str]:
    """Compartments covered by the named catalog networks."""
    from stainfree.catalog import load_catalog

    return [c.name for n in load_catalog("organelles_v1").networks if n.name in nets for c in n.classes]


def _demo_compare_counts(pred: Any, truth: Any, structures: list[str]) -> Any:
    """Object count and total volume per compartment: segmentation next to the truth."""
    cols = ["structure", "count", "total_volume_um3"]
    keep = [c for c in cols if c in pred.columns and c in truth.columns]
    merged = truth[keep].merge(pred[keep], on="structure", how="outer", suffixes=("_true", "_segmented"))
    return merged[merged["structure"].isin(structures)].reset_index(drop=True)


# ----- input/output: info (owner: io) ----------------------------------------------------------------------
# <api-io>
def info(paths: Any) -> Any:
    """Describe image files: format, axes, shape, dtype, voxel size, channels, intensity range, problems.

    Files are opened lazily where the format allows, so the intensity range of a large file is computed chunk
    by chunk. A file that cannot be used (missing, unreadable, NaN/Inf, size 0, every pixel equal) is not an
    error here: its row says what is wrong.

    Parameters
    ----------
    paths : path-like or sequence of path-likes
        Files, OME-Zarr folders or glob patterns of 2D slices.

    Returns
    -------
    pandas.DataFrame
        One row per path with columns ``path, format, axes, shape, dtype, voxel_size_um, channels, min, max,
        ok, problem`` (``problem`` is "" for usable files).
    """
    import os

    import pandas as pd

    from stainfree.errors import InputError
    from stainfree.io.readers import image_stats, read_image

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    rows = []
    for path in paths:
        row: dict[str, Any] = {"path": str(path), "format": "", "axes": "", "shape": None, "dtype": ""}
        row.update(voxel_size_um=None, channels=None, min=None, max=None, ok=False, problem="")
        try:
            array, meta = read_image(path, lazy=True)
            row.update(
                format=meta.extra.get("format", ""),
                axes=meta.axes,
                shape=meta.shape,
                dtype=meta.dtype,
                voxel_size_um=meta.voxel_size_um,
                channels=meta.channel_names,
            )
            stats = image_stats(array)
            row.update(min=stats["min"], max=stats["max"])
            if stats["nan"]:
                raise InputError(path, f"image contains {stats['nan']} NaN value(s)")
            if stats["inf"]:
                raise InputError(path, f"image contains {stats['inf']} infinite value(s)")
            if stats["min"] == stats["max"]:
                value = stats["min"]
                shown = str(int(value)) if float(value).is_integer() else f"{value:g}"
                raise InputError(path, f"empty image: every pixel is {shown}")
            row["ok"] = True
        except InputError as exc:
            row["problem"] = exc.problem
        rows.append(row)
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)


# ----- digital cell: simulate (owner: simulate) ------------------------------------------------------------
# <api-simulate>
def simulate(
    out_dir: str | Path,
    config: Any = None,
    *,
    progress: bool = False,
    **overrides: Any,
) -> Path:
    """Simulate a data set of digital cells (bright-field, fluorescence, Nile Red, exact masks).

    Parameters
    ----------
    out_dir : path
        Destination folder (one ``field_NNN/`` per field, ``manifest.csv``, ``simulation.json``).
    config : SimulationConfig or path to YAML, optional
        Settings; defaults to ``SimulationConfig()``.
    progress : bool
        Show a rich progress bar.
    **overrides
        Fields of :class:`stainfree.config.SimulationConfig` replacing those of ``config`` (e.g. ``seed=1``).

    Returns
    -------
    Path
        The manifest path.
    """
    from stainfree.config import SimulationConfig, resolve
    from stainfree.simulate import write_dataset

    cfg = resolve(SimulationConfig, config, source="simulate options", **overrides)
    if not progress:
        return write_dataset(cfg, out_dir)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("simulating fields"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ) as bar:
        task = bar.add_task("simulate", total=cfg.n_fields)
        return write_dataset(cfg, out_dir, progress=lambda done, total: bar.update(task, completed=done))


# ----- virtual staining: manifest, train, predict, evaluate  ------------------------------------------------
# (training: manifest, train; owner: training)
# <api-training>
def make_manifest(
    signal: str | Path,
    target: str | Path,
    out: str | Path,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    signal_channels: str | None = None,
    target_channels: str | None = None,
) -> Path:
    """Pair signal and target images (folders or glob patterns) into a manifest CSV with a train/test split.

    Files are paired by name stem, else by sorted order. Paths inside the CSV are written relative to the
    CSV's folder when they lie below it, absolute otherwise. ``signal_channels`` / ``target_channels`` (e.g.
    ``"dna"`` or ``"yellow;red"``) fill the per-row channel columns. Returns the CSV path.
    """
    from stainfree.io.manifest import build_manifest, write_manifest

    df = build_manifest(signal, target, test_fraction=test_fraction, seed=seed)
    if signal_channels:
        df.insert(2, "signal_channels", signal_channels)
    if target_channels:
        df.insert(len(df.columns) - 1, "target_channels", target_channels)
    return write_manifest(df, out)


def train(
    job_or_yaml: Any, *, resume: bool = False, max_steps: int | None = None, progress: bool = True
) -> Path:
    """Train a network from a :class:`~stainfree.config.TrainingJob` or its YAML file; returns the bundle.

    A relative manifest path in a YAML file is relative to the YAML file; ``output_dir`` relative to the
    current folder. ``resume`` continues from ``<output_dir>/checkpoints/last.ckpt``; ``max_steps`` overrides
    the configured number of steps.
    """
    from stainfree.config import TrainingJob, load_yaml
    from stainfree.train.fit import fit

    if isinstance(job_or_yaml, TrainingJob):
        job = job_or_yaml
    else:
        path = Path(job_or_yaml)
        job = load_yaml(TrainingJob, path)
        if job.data.manifest is not None and not job.data.manifest.is_absolute():
            job.data.manifest = (path.resolve().parent / job.data.manifest).resolve()
    if max_steps is not None:
        job = job.model_copy(update={"train": job.train.model_copy(update={"max_steps": int(max_steps)})})
    return fit(job, resume=resume, progress=progress)


def write_default_training_job(path: str | Path, **overrides: Any) -> Path:
    """Write a default :class:`~stainfree.config.TrainingJob` as YAML (a starting point to edit)."""
    from stainfree.config import TrainingJob, save_yaml

    return save_yaml(TrainingJob(**overrides), path)


# (inference and evaluation: predict, evaluate; owner: inference)
# <api-inference>
_IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr", ".czi", ".png")


def _image_paths(spec: Any, what: str) -> list[Path]:
    """Image files from a path, a folder (its images, sorted), a glob pattern or a list of those."""
    import glob

    from stainfree.errors import InputError

    if spec is None:
        return []
    if isinstance(spec, (list, tuple)):
        return [p for s in spec for p in _image_paths(s, what)]
    text = str(spec)
    if any(c in text for c in "*?["):
        found = sorted(Path(p) for p in glob.glob(text))
    elif Path(text).is_dir() and not text.rstrip("/").endswith(".zarr"):
        found = sorted(p for p in Path(text).iterdir() if p.name.lower().endswith(_IMAGE_SUFFIXES))
    else:
        found = [Path(text)]
    if not found:
        raise InputError(text, f"no {what} images found")
    return found


def predict(
    bundles: Any,
    input: str | Path,
    output: str | Path,
    *,
    tile: list[int] | None = None,
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    bf16: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Path]:
    """Predict an image with one model bundle, or a multi-structure collection with several.

    Parameters
    ----------
    bundles : path or list of paths
        Model bundle folder(s) (``<name>.stainfree``).
    input : path
        Label-free image (any format :func:`stainfree.io.readers.read_image` reads).
    output : path
        ``.ome.tif`` or ``.ome.zarr``. With several bundles: one channel per structure, plus an RGB merge PNG
        ``<stem>_merge.png`` beside it.
    tile, overlap, sw_batch_size, bf16, device
        See :class:`stainfree.config.PredictConfig`.
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        ``{"image": path}`` and, for a collection, ``"merge": path``.
    """
    from stainfree.config import PredictConfig, validate
    from stainfree.inference.collection import predict_collection_file
    from stainfree.inference.predict import predict_file

    cfg = validate(
        PredictConfig,
        {"tile": tile, "overlap": overlap, "sw_batch_size": sw_batch_size, "bf16": bf16, "device": device},
        source="predict options",
    )
    kwargs = {
        "roi_size": tuple(cfg.tile) if cfg.tile else None,
        "overlap": cfg.overlap,
        "sw_batch_size": cfg.sw_batch_size,
        "bf16": cfg.bf16,
        "device": cfg.device,
        "progress": progress,
    }
    paths = list(bundles) if isinstance(bundles, (list, tuple)) else [bundles]
    if len(paths) == 1:
        return {"image": predict_file(paths[0], input, output, **kwargs)}
    return predict_collection_file(paths, input, output, **kwargs)


def _read_czyx(path: Path) -> tuple[Any, Any]:
    import numpy as np

    from stainfree.io.readers import as_czyx, read_image

    array, meta = read_image(path)
    return np.asarray(as_czyx(array, meta.axes)), meta


def _match_channels(target: Any, t_meta: Any, names: list[str], source: Path) -> Any:
    """The target channels that correspond to prediction channels ``names`` (by name, else by order)."""
    from stainfree.errors import InputError

    t_names = list(t_meta.channel_names)
    if names and all(n in t_names for n in names):
        return target[[t_names.index(n) for n in names]]
    if target.shape[0] == len(names):
        return target
    raise InputError(
        source, f"channels {t_names} do not match the prediction channels {names} (by name or by number)"
    )


def _truth_for_segmentation(target: Any, t_meta: Any, names: list[str], task: str, source: Path) -> Any:
    """Truth masks (binary, (C, ...)) or a class map (multiclass, (...)) for the prediction's classes.

    A single-channel integer target whose values are compartment ids (the simulator's ``labels.ome.tif``) is
    mapped onto the predicted compartments by name: binary masks as the organelle catalog defines each
    compartment (:func:`stainfree.catalog.compartment_truth`, e.g. cytosol with its organelles), a class map
    by each voxel's own label.
    """
    import numpy as np

    from stainfree.types import COMPARTMENTS, compartment_id

    label_map = target.shape[0] == 1 and np.issubdtype(target.dtype, np.integer)
    fg = [n for n in names if n != "background"]
    by_compartment = label_map and fg and all(n in COMPARTMENTS for n in fg)
    if task == "binary":
        if by_compartment:
            from stainfree.catalog import compartment_truth, load_catalog

            cat = load_catalog()
            empty = np.zeros(target.shape[1:], dtype=bool)
            masks = [compartment_truth(cat, n, target[0]) if n in COMPARTMENTS else empty for n in names]
            return np.stack(masks)
        return _match_channels(target, t_meta, names, source) > 0
    labels = target[0]
    if by_compartment:
        lut = np.zeros(max(int(labels.max()), len(COMPARTMENTS)) + 1, dtype=np.int64)
        for k, n in enumerate(names):
            if n in COMPARTMENTS:
                lut[compartment_id(n)] = k
        return lut[labels]
    return labels.astype(np.int64)


def evaluate(
    predictions: Any,
    targets: Any,
    out_dir: str | Path,
    *,
    task: str = "regression",
    clean_targets: Any = None,
    controls: Any = None,
    signals: Any = None,
    threshold: float = 0.5,
    nmse_scale: str = "truth_zscore",
) -> Any:
    """Score predictions against targets; write ``evaluation.csv`` and figures to ``out_dir``.

    Parameters
    ----------
    predictions, targets : path, folder, glob or list
        Prediction and target images, paired in sorted order. Target channels are matched to the prediction's
        channel names (else by order). For segmentation a simulator label map (compartment ids) is matched to
        the predicted compartments by name.
    out_dir : path
        Folder for ``evaluation.csv`` and the PNG figures.
    task : {"regression", "binary", "multiclass"}
        What was predicted.
    clean_targets : path, folder, glob or list, optional
        Noise-free targets (simulator ``fluorescence_clean``), paired with the predictions: exact C_max.
    controls : path, folder, glob or list, optional
        Unlabeled control images with the target's channels: C_max per structure (fnet's method).
    signals : path, folder, glob or list, optional
        The label-free inputs, for the slice panels of the first image.
    threshold, nmse_scale
        See :class:`stainfree.config.EvaluateConfig`.

    Returns
    -------
    pandas.DataFrame
        The table written to ``evaluation.csv`` (one row per image and structure).
    """
    from stainfree.config import EvaluateConfig, validate
    from stainfree.errors import InputError
    from stainfree.evaluate import figures
    from stainfree.evaluate.evaluate import evaluate_regression, evaluate_segmentation, total_confusion_matrix
    from stainfree.io.writers import write_table

    cfg = validate(
        EvaluateConfig,
        {"task": task, "threshold": threshold, "nmse_scale": nmse_scale},
        source="evaluate options",
    )
    pred_paths = _image_paths(predictions, "prediction")
    target_paths = _image_paths(targets, "target")
    if len(pred_paths) != len(target_paths):
        raise InputError(
            str(targets), f"{len(target_paths)} target image(s) for {len(pred_paths)} prediction(s)"
        )
    clean_paths = _image_paths(clean_targets, "clean target")
    if clean_paths and len(clean_paths) != len(pred_paths):
        raise InputError(
            str(clean_targets), f"{len(clean_paths)} clean target(s) for {len(pred_paths)} prediction(s)"
        )
    out_dir = Path(out_dir)
    pairs, cleans, names = [], [], None
    first_pred = None
    for i, (pp, tp) in enumerate(zip(pred_paths, target_paths, strict=True)):
        pred, p_meta = _read_czyx(pp)
        target, t_meta = _read_czyx(tp)
        names = list(p_meta.channel_names) or [f"ch{c}" for c in range(pred.shape[0])]
        image_name = pp.name.split(".")[0]
        if cfg.task == "regression":
            truth = _match_channels(target, t_meta, names, tp)
            if clean_paths:
                clean, c_meta = _read_czyx(clean_paths[i])
                cleans.append(_match_channels(clean, c_meta, names, clean_paths[i]))
        else:
            truth = _truth_for_segmentation(target, t_meta, names, cfg.task, tp)
        if truth.shape[-3:] != pred.shape[-3:]:
            raise InputError(
                pp, f"prediction grid {pred.shape[1:]} differs from the target grid {truth.shape[-3:]}"
            )
        pairs.append((image_name, truth, pred))
        if first_pred is None:
            first_pred = (pred, truth)
    assert names is not None and first_pred is not None
    if cfg.task == "regression":
        control_map = None
        if controls is not None:
            control_map = {n: [] for n in names}
            for cp in _image_paths(controls, "control"):
                control, c_meta = _read_czyx(cp)
                matched = _match_channels(control, c_meta, names, cp)
                for c, n in enumerate(names):
                    control_map[n].append(matched[c])
        table = evaluate_regression(
            pairs, names, clean_targets=cleans or None, controls=control_map, nmse_scale=cfg.nmse_scale
        )
        figures.plot_r_per_structure(table, out_dir / "pearson_r.png")
        signal_paths = _image_paths(signals, "signal")
        pred0, truth0 = first_pred
        signal0 = _read_czyx(signal_paths[0])[0][0] if signal_paths else truth0[0] * 0
        figures.plot_slices(signal0, truth0, pred0, names, out_dir / "slices.png")
    else:
        table = evaluate_segmentation(pairs, names, task=cfg.task, threshold=cfg.threshold)
        figures.plot_segmentation_bars(table, out_dir / "segmentation_scores.png")
        if cfg.task == "multiclass":
            cm = total_confusion_matrix(pairs, len(names))
            figures.plot_confusion(cm, names, out_dir / "confusion_matrix.png")
            import pandas as pd

            cm_table = pd.DataFrame(cm, index=pd.Index(names, name="truth"), columns=names).reset_index()
            write_table(out_dir / "confusion_matrix.csv", cm_table)
    write_table(out_dir / "evaluation.csv", table)
    return table


# ----- segmentation: make_masks, segment  -------------------------------------------------------------------
# <api-segmentation>
def _catalog_training_manifest(
    sim_or_manifest: str | Path, net: Any, out_dir: Path, *, splits: tuple[str, ...] = ("train", "val")
) -> Path:
    """Write the targets of one catalog network (from the simulator's labels) and its training manifest."""
    import numpy as np
    import pandas as pd

    from stainfree.catalog import network_target
    from stainfree.errors import InputError
    from stainfree.io.manifest import read_manifest, write_manifest
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff

    src = Path(sim_or_manifest)
    manifest = src / "manifest.csv" if src.is_dir() else src
    df = read_manifest(manifest)
    for col in ("nilered", "labels"):
        if col not in df.columns:
            raise InputError(manifest, f"no column {col!r}: not a simulator manifest (needs nilered, labels)")
    rows = []
    tdir = out_dir / "targets" / net.name
    for i, row in df.iterrows():
        if row["split"] not in splits:
            continue
        labels, meta = read_image(row["labels"])
        name = str(row["field"]) if "field" in df.columns and row["field"] else f"field_{i:03d}"
        target = network_target(net, np.asarray(labels))
        axes = "ZYX"[-target.ndim :]
        dest = write_ome_tiff(tdir / f"{name}.ome.tif", target, axes, voxel_size_um=meta.voxel_size_um)
        rows.append({"signal": row["nilered"], "target": str(dest), "split": row["split"]})
    if not rows:
        raise InputError(manifest, f"no rows in split(s) {', '.join(splits)}")
    return write_manifest(pd.DataFrame(rows), tdir / "manifest.csv")


def catalog_training_job(
    net: Any,
    manifest: str | Path,
    output_dir: str | Path,
    *,
    catalog: Any = None,
    max_steps: int = 2000,
    max_epochs: int | None = None,
    batch_size: int = 4,
    patch_shape: list[int] | None = None,
    spatial_dims: int | None = None,
    input_transform: str | None = None,
    depth: int | None = None,
    base_channels: int | None = None,
    lr: float = 1e-4,
    val_every_n_steps: int = 50,
    val_patches: int = 8,
    augment: bool = True,
    voxel_size_um: tuple[float, float, float] | None = None,
    seed: int = 0,
    init_from: str | Path | None = None,
    freeze_encoder: bool = False,
    loss: str | None = None,
    foreground_fraction: float | None = None,
) -> Any:
    """The TrainingJob of one catalog network: the LiCAI recipe through the shared
    :func:`stainfree.train.fit.fit`.

    Attention U-Net (architecture of the catalog), inputs (intensity, ratio) of the yellow and red Nile Red
    channels (or intensity only), the net's pos_weight / class weights, Adam lr 1e-4, ReduceLROnPlateau
    (factor
    0.3, patience 5) on the validation F1, best-F1 checkpoint exported, stop when lr < 1e-6 or at
    ``max_steps`` /
    ``max_epochs``; on-the-fly augmentation of image and masks together (rotation, scale 0.9-1.1, gain
    0.75-1.5
    on the intensity channel only, never on the ratio). Patch 24x256x256 (3D) / 256x256 (2D) unless given.
    Keyword arguments override the catalog (``loss="dice_ce"``, batch Dice plus the weighted BCE/CE, trains
    rare structures faster on a short budget). ``foreground_fraction`` (default: the net's; 0.5 for every
    net of the packaged catalog) of the training and validation patches are centred on a voxel of one of
    the net's structures (drawn uniformly; every class of a net without background class, label 0
    included).
    """
    from stainfree.catalog import load_catalog
    from stainfree.config import AugmentConfig, DataConfig, ModelConfig, TrainConfig, TrainingJob

    cat = catalog or load_catalog()
    dims = spatial_dims or net.spatial_dims
    transform = input_transform or net.input_transform
    if patch_shape is None:
        patch_shape = list(net.patch_shape) if len(net.patch_shape) == dims else ([24, 256, 256][-dims:])
    data = DataConfig(
        manifest=Path(manifest),
        signal_column="signal",
        target_column="target",
        signal_channels=["yellow", "red"],
        class_names=net.output_names,
        input_mode="3d" if dims == 3 else "2d",
        voxel_size_um=voxel_size_um,
        input_transform=transform,
        normalization="zscore",
        patch_shape=list(patch_shape),
        foreground_fraction=net.foreground_fraction if foreground_fraction is None else foreground_fraction,
        # a net whose classes fill the volume (no background) has label 0 as a class of its own
        foreground_labels=None
        if net.task == "binary" or net.background_class
        else list(range(net.n_outputs)),
    )
    model = ModelConfig(
        architecture=cat.architecture,
        spatial_dims=dims,
        in_channels=2 if transform == "ratiometric" else 1,
        out_channels=net.n_outputs,
        depth=depth or cat.depth,
        base_channels=base_channels or cat.base_channels,
    )
    train = TrainConfig(
        task=net.task,
        loss=loss or net.loss,
        pos_weight=net.pos_weight,
        class_weights=net.class_weights,
        lr=lr,
        betas=(0.9, 0.999),
        batch_size=batch_size,
        max_steps=max_steps,
        max_epochs=max_epochs,
        val_every_n_steps=val_every_n_steps,
        val_patches=val_patches,
        checkpoint_every_n_steps=val_every_n_steps,
        scheduler="plateau",
        plateau_factor=0.3,
        plateau_patience=5,
        min_lr=1e-6,
        monitor="val_f1",
        export="best",
        augment=AugmentConfig(
            enabled=augment, rotation_degrees=180.0, scale_range=(0.9, 1.1), gain_range=(0.75, 1.5)
        ),
        accelerator="cpu",
        devices=1,
        seed=seed,
        init_from=Path(init_from) if init_from is not None else None,
        freeze_encoder=freeze_encoder,
    )
    return TrainingJob(name=net.name, data=data, model=model, train=train, output_dir=Path(output_dir))


def _publish_bundle(bundle: Path, dest: Path) -> Path:
    """Copy a trained bundle folder to ``dest`` atomically."""
    import shutil

    from stainfree.io.atomic import atomic_path

    with atomic_path(dest) as tmp:
        shutil.copytree(bundle, tmp)
    return dest


def train_catalog(
    sim_or_manifest: str | Path,
    out_dir: str | Path,
    *,
    structures: list[str] | None = None,
    catalog: str | Path | None = None,
    max_steps: int = 2000,
    max_epochs: int | None = None,
    resume: bool = False,
    progress: bool = False,
    **job_overrides: Any,
) -> list[Path]:
    """Train the networks of the organelle catalog on a simulated dataset.

    Targets come from the simulator's ``labels.ome.tif`` (binary masks per compartment, class maps for the
    ER, PM
    and VOLUME nets, see :func:`stainfree.catalog.network_target`); inputs are its ``nilered.ome.tif``.

    Parameters
    ----------
    sim_or_manifest : path
        Simulator output folder (with ``manifest.csv``) or that manifest.
    out_dir : path
        Receives ``<NET>.stainfree`` bundles (the input of :func:`segment`), ``targets/`` and ``runs/``.
    structures : list of str, optional
        Network names (``"LD"``, ``"ER"``) or compartment names (``"golgi"``) to train; default: all 10 nets.
    catalog : str or path, optional
        Catalog name or YAML (default ``organelles_v1``).
    max_steps, max_epochs : int
        Training budget of each net.
    resume : bool
        Continue each net from its last checkpoint in ``out_dir/runs/<NET>`` (an interrupted run).
    progress : bool
        Print one line per network.
    **job_overrides
        Passed to :func:`catalog_training_job` (e.g. ``patch_shape``, ``spatial_dims``, ``input_transform``,
        ``depth``, ``base_channels``, ``batch_size``).

    Returns
    -------
    list of Path
        The bundles, one per trained network.
    """
    from stainfree.catalog import load_catalog
    from stainfree.errors import InputError
    from stainfree.train.fit import fit

    cat = load_catalog(catalog or "organelles_v1")
    nets = cat.networks
    if structures:
        wanted = set(structures)
        known = {n.name for n in nets} | {c.name for n in nets for c in n.classes}
        unknown = sorted(wanted - known)
        if unknown:
            raise InputError("structures", f"unknown {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        nets = [n for n in nets if n.name in wanted or any(c.name in wanted for c in n.classes)]
    out = Path(out_dir)
    bundles = []
    for net in nets:
        if progress:
            from rich import print as rprint

            rprint(f"[bold]training {net.name}[/] ({', '.join(c.name for c in net.classes)})")
        manifest = _catalog_training_manifest(sim_or_manifest, net, out)
        job = catalog_training_job(
            net,
            manifest,
            out / "runs" / net.name,
            catalog=cat,
            max_steps=max_steps,
            max_epochs=max_epochs,
            **job_overrides,
        )
        bundle = Path(fit(job, resume=resume, progress=progress))
        bundles.append(_publish_bundle(bundle, out / f"{net.name}.stainfree"))
    return bundles


def fine_tune(
    bundle: str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    *,
    max_steps: int = 200,
    lr: float = 1e-4,
    freeze_encoder: bool = False,
    name: str | None = None,
    progress: bool = False,
    **job_overrides: Any,
) -> Path:
    """Fine-tune a segmentation bundle on a few images (second microscope, another cell shape).

    Parameters
    ----------
    bundle : path
        The bundle to start from (its architecture, inputs and classes are kept).
    manifest : path
        A simulator folder/manifest (targets are derived from its labels for the bundle's catalog network) or
        a
        training manifest with ``signal`` (Nile Red) and ``target`` (mask or class map) columns.
    out_dir : path
        Receives ``<name>.stainfree`` (default name: ``<bundle name>_ft``) and ``runs/``.
    max_steps, lr : training budget and learning rate.
    freeze_encoder : bool
        Train only the decoder.

    Returns
    -------
    Path
        The fine-tuned bundle.
    """
    import pandas as pd

    from stainfree.catalog import load_catalog
    from stainfree.config import CatalogClass, CatalogNetwork
    from stainfree.errors import InputError
    from stainfree.models.bundle import load_bundle
    from stainfree.train.fit import fit

    b = load_bundle(bundle)
    cfg = b.config
    out = Path(out_dir)
    names = list(cfg.class_names or [])
    fg = [n for n in names if n != "background"]
    cat = load_catalog()
    try:
        net = cat.network_of(fg[0])
    except (KeyError, IndexError):
        net = CatalogNetwork(
            name=cfg.name,
            task=cfg.task,
            classes=[CatalogClass(name=n) for n in fg],
            background_class="background" in names,
        )
    net = net.model_copy(update={"name": name or f"{cfg.name}_ft"})
    src = Path(manifest)
    sim_manifest = src / "manifest.csv" if src.is_dir() else src
    if not sim_manifest.is_file():
        raise InputError(sim_manifest, "manifest not found")
    columns = set(pd.read_csv(sim_manifest, nrows=0).columns)
    if {"nilered", "labels"} <= columns:
        train_manifest = _catalog_training_manifest(sim_manifest, net, out)
    elif {"signal", "target"} <= columns:
        train_manifest = sim_manifest
    else:
        raise InputError(sim_manifest, "needs nilered+labels (simulator) or signal+target columns")
    overrides = {
        "spatial_dims": cfg.spatial_dims,
        "input_transform": cfg.input_transform,
        "depth": cfg.model.depth,
        "base_channels": cfg.model.base_channels,
        "patch_shape": list(cfg.patch_shape) or None,
        "voxel_size_um": cfg.voxel_size_um,
    }
    overrides.update(job_overrides)
    job = catalog_training_job(
        net,
        train_manifest,
        out / "runs" / net.name,
        max_steps=max_steps,
        lr=lr,
        init_from=Path(bundle),
        freeze_encoder=freeze_encoder,
        **overrides,
    )
    job = job.model_copy(update={"model": cfg.model.model_copy()})
    tuned = Path(fit(job, progress=progress))
    return _publish_bundle(tuned, out / f"{net.name}.stainfree")


def segment(
    nilered_image: str | Path,
    bundles: str | Path | list[str | Path],
    out_dir: str | Path,
    *,
    catalog: str | Path | None = None,
    threshold: float = 0.5,
    name: str | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Segment the 15 compartments of one Nile Red image with the catalog's bundles.

    Parameters
    ----------
    nilered_image : path
        Image with the yellow and red Nile Red channels (named ``yellow``/``red``, or the first two channels).
    bundles : path or list of paths
        A folder of bundles (from :func:`train_catalog`) or bundle paths.
    out_dir : path
        Receives ``<name>_masks.ome.tif`` (15 named channels), ``<name>_labels.ome.tif`` and
        ``<name>_overlay.png``.
    catalog : str or path, optional
        Catalog of the label priority (default ``organelles_v1``).
    threshold : float
        Probability threshold of binary nets.

    Returns
    -------
    dict
        Paths of ``masks``, ``labels`` and ``overlay``.
    """
    from dataclasses import replace

    import numpy as np

    from stainfree.catalog import load_catalog
    from stainfree.data.preprocess import channel_indices
    from stainfree.errors import InputError
    from stainfree.inference.segment import segment as run_segment
    from stainfree.inference.segment import write_segmentation
    from stainfree.io.readers import as_czyx, read_image

    arr, meta = read_image(nilered_image)
    czyx = np.asarray(as_czyx(np.asarray(arr), meta.axes))
    if czyx.shape[0] < 2:
        raise InputError(nilered_image, "needs two channels (yellow and red Nile Red emission)")
    names = list(meta.channel_names)
    if not {"yellow", "red"} <= set(names):  # unnamed channels: the first two are yellow, red
        names = ["yellow", "red", *[f"ch{i}" for i in range(2, czyx.shape[0])]]
    meta = replace(meta, channel_names=tuple(names), axes="CZYX", shape=czyx.shape)
    iy, ir = channel_indices(["yellow", "red"], names, czyx.shape[0], str(nilered_image))
    masks, labels = run_segment(
        bundles if isinstance(bundles, str | Path) else list(bundles),
        czyx,
        meta,
        catalog=catalog,
        threshold=threshold,
        progress=progress,
    )
    intensity = (czyx[iy].astype(np.float32) + czyx[ir].astype(np.float32)) / 2
    stem = name or Path(nilered_image).name.split(".")[0]
    return write_segmentation(
        out_dir,
        masks,
        labels,
        intensity,
        voxel_size_um=meta.voxel_size_um,
        name=stem,
        priority=load_catalog(catalog or "organelles_v1").label_priority,
    )


def make_masks(
    folder_or_files: str | Path | list[str | Path],
    out_dir: str | Path,
    *,
    method: str = "threshold",
    bleed: float = 0.05,
    ld_mask: str | Path | None = None,
    fgnet: str | Path | None = None,
) -> list[Path]:
    """Ground-truth masks from colocalization images (see :func:`stainfree.data.groundtruth.make_masks`)."""
    from stainfree.data.groundtruth import make_masks as _make_masks

    return _make_masks(folder_or_files, out_dir, method=method, bleed=bleed, ld_mask=ld_mask, fgnet=fgnet)


def train_fgnet(
    images: list[str | Path],
    masks: list[str | Path],
    out_dir: str | Path,
    *,
    bleed: float = 0.05,
    max_steps: int = 300,
    patch_shape: list[int] | None = None,
    depth: int = 3,
    base_channels: int = 16,
    name: str = "fgnet",
    progress: bool = False,
) -> Path:
    """Train an FG-net: a small 2D binary network on a handful of annotated colocalization images.

    The inputs are the bleed-through-corrected GFP channels (written to ``out_dir/fgnet_inputs``), the targets
    the annotated masks. The result segments the foreground of any organelle's colocalization image
    (``make_masks(..., method="fgnet", fgnet=bundle)``).

    Returns
    -------
    Path
        The FG-net bundle ``out_dir/<name>.stainfree``.
    """
    import numpy as np
    import pandas as pd

    from stainfree.config import AugmentConfig, DataConfig, ModelConfig, TrainConfig, TrainingJob
    from stainfree.data.groundtruth import split_colocalization, subtract_bleedthrough
    from stainfree.errors import InputError
    from stainfree.io.manifest import write_manifest
    from stainfree.io.readers import as_czyx, read_image
    from stainfree.io.writers import write_ome_tiff
    from stainfree.train.fit import fit

    if len(images) != len(masks) or not images:
        raise InputError("fgnet training", f"{len(images)} image(s), {len(masks)} mask(s); need equal, >= 1")
    out = Path(out_dir)
    rows = []
    for i, (img, msk) in enumerate(zip(images, masks, strict=True)):
        arr, meta = read_image(img)
        czyx = np.asarray(as_czyx(np.asarray(arr), meta.axes))
        gfp, yellow = split_colocalization(czyx, meta.channel_names, source=str(img))
        g = subtract_bleedthrough(gfp, yellow, bleed) if yellow is not None else gfp.astype(np.float32)
        dest = write_ome_tiff(out / "fgnet_inputs" / f"image_{i:03d}.ome.tif", g, "ZYX")
        rows.append({"signal": str(dest), "target": str(Path(msk).resolve()), "split": "train"})
    manifest = write_manifest(pd.DataFrame(rows), out / "fgnet_inputs" / "manifest.csv")
    job = TrainingJob(
        name=name,
        data=DataConfig(
            manifest=manifest,
            class_names=["foreground"],
            input_mode="2d",
            voxel_size_um=None,
            normalization="percentile",
            patch_shape=patch_shape or [128, 128],
            val_fraction=0.0,
        ),
        model=ModelConfig(
            architecture="attention_unet",
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            depth=depth,
            base_channels=base_channels,
        ),
        train=TrainConfig(
            task="binary",
            loss="dice_ce",
            lr=1e-3,
            betas=(0.9, 0.999),
            batch_size=4,
            max_steps=max_steps,
            val_every_n_steps=max(10, max_steps // 5),
            checkpoint_every_n_steps=max(10, max_steps // 5),
            monitor="val_f1",
            augment=AugmentConfig(enabled=True, rotation_degrees=180.0),
            accelerator="cpu",
            devices=1,
        ),
        output_dir=out / "runs" / name,
    )
    return _publish_bundle(Path(fit(job, progress=progress)), out / f"{name}.stainfree")


# ----- quantification: quantify  ----------------------------------------------------------------------------
# <api-quantify>
def _quantify_aux(value: Any, name: str, n_frames: int, spatial: tuple[int, ...]) -> Any:
    """An auxiliary image (array or path) as an array of one frame's shape or (T, ...)."""
    import numpy as np

    from stainfree.quantify.inputs import load_frames_image

    if value is None or isinstance(value, np.ndarray):
        return value
    arr, _ = load_frames_image(value, n_frames, spatial)
    if arr.ndim != len(spatial) + 1:
        from stainfree.errors import InputError

        raise InputError(value, f"{name} must have one channel")
    return arr


def _quantify_nilered(value: Any, n_frames: int, spatial: tuple[int, ...]) -> tuple[Any, Any]:
    """Intensity (Y+R)/2 and ratio R/Y per frame from a Nile Red image (path or (T,)C,spatial array)."""
    import numpy as np

    from stainfree.data.ratiometric import intensity_ratio
    from stainfree.errors import InputError
    from stainfree.quantify.inputs import load_frames_image

    if isinstance(value, np.ndarray):
        arr, chans = (value if value.ndim == len(spatial) + 2 else value[None]), ()
    else:
        arr, meta = load_frames_image(value, n_frames, spatial)
        chans = tuple(c.lower() for c in meta.channel_names)
    if arr.ndim != len(spatial) + 2 or arr.shape[1] < 2:
        raise InputError(
            str(value) if not isinstance(value, np.ndarray) else "nilered array",
            "a Nile Red image needs two channels (yellow, red)",
        )
    iy = chans.index("yellow") if "yellow" in chans else 0
    ir = chans.index("red") if "red" in chans else 1
    pairs = [intensity_ratio(arr[t, iy], arr[t, ir], offset="auto") for t in range(arr.shape[0])]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def quantify(
    masks: Any,
    out_dir: str | Path | None = None,
    *,
    intensity: Any = None,
    ratio: Any = None,
    nilered: Any = None,
    cells: Any = None,
    voxel_size_um: tuple[float, float, float] | None = None,
    names: list[str] | None = None,
    axes: str | None = None,
    kind: str | None = None,
    config: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Quantify organelles: objects, per-structure and per-cell summaries, contacts, tracks, contact events.

    Parameters
    ----------
    masks : path or ndarray
        A simulated data set (folder with ``manifest.csv``, or the manifest: every field, tables stacked with
        a ``field`` column), a label map (values 1..15 = :data:`stainfree.types.COMPARTMENTS`, or 1..n =
        ``names``), a stack of named binary masks (``stainfree segment`` output), an instance stack
        (``instances.ome.tif``), a simulator field folder (its instances, cells, Nile Red, voxel size and
        frame interval are used), or an array. A T axis makes a time-lapse.
    out_dir : path, optional
        Where tables (CSV + Parquet), figures (PNG) and ``quantify.json`` go; None writes nothing.
    intensity, ratio : path or ndarray, optional
        Images whose per-object means are reported.
    nilered : path or ndarray, optional
        A Nile Red image (yellow, red channels) giving intensity and ratio
        (:func:`stainfree.data.ratiometric.intensity_ratio`); overrides ``intensity``/``ratio``.
    cells : path or ndarray, optional
        Cell-id map (0 = outside); default: derived from the structures (see ``QuantifyConfig.derive_cells``).
    voxel_size_um : (z, y, x), optional
        Overrides the voxel size of the file; 1 um is assumed (with a warning) where unknown.
    names : list of str, optional
        Names of label values 1..n or of the mask channels.
    axes : str, optional
        Axes of an array input (see :func:`stainfree.quantify.inputs.load_masks`).
    kind : {"labels", "masks", "instances"}, optional
        Force how the masks are read (default: guessed; a single-channel image is a label map, and
        ``kind="instances"`` reads it as one structure's instance map, e.g. nuclei from StarDist).
    config : QuantifyConfig or path to YAML, optional
        Settings.
    progress : bool
        Show a rich progress bar.

    Returns
    -------
    dict of str -> pandas.DataFrame
        ``objects, structures, cells, contacts, contact_matrix, object_contacts, timeseries, links,
        contact_events`` (see :data:`stainfree.quantify.run.TABLES`).
    """
    import numpy as np
    import pandas as pd

    from stainfree.config import QuantifyConfig, resolve
    from stainfree.io.writers import write_json
    from stainfree.quantify.figures import write_figures, write_tables
    from stainfree.quantify.inputs import dataset_fields

    cfg = resolve(QuantifyConfig, config)
    fields = None if isinstance(masks, np.ndarray) else dataset_fields(masks)
    if fields:  # a simulated data set: every field, tables stacked with a "field" column
        per_field, metas = {}, []
        for name, folder in fields:
            per_field[name], meta = _quantify_one(
                folder, cfg, voxel_size_um=voxel_size_um, names=names, kind=kind, progress=progress
            )
            metas.append({"field": name, **meta})
        tables = {
            key: pd.concat(
                [t[key].assign(field=name)[["field", *t[key].columns]] for name, t in per_field.items()],
                ignore_index=True,
            )
            for key in next(iter(per_field.values()))
        }
        meta = {"source": str(masks), "fields": metas}
    else:
        tables, meta = _quantify_one(
            masks,
            cfg,
            intensity=intensity,
            ratio=ratio,
            nilered=nilered,
            cells=cells,
            voxel_size_um=voxel_size_um,
            names=names,
            axes=axes,
            kind=kind,
            progress=progress,
        )
    if out_dir is not None:
        out = Path(out_dir)
        written = write_tables(tables, out)
        if cfg.figures:
            written.update(write_figures(tables, out, frame_interval_s=cfg.frame_interval_s))
        meta.update(n_objects=int(len(tables["objects"])), config=cfg.model_dump(mode="json"))
        meta["files"] = sorted(written)
        write_json(out / "quantify.json", meta)
    return tables


def _quantify_one(
    masks: Any,
    cfg: Any,
    *,
    intensity: Any = None,
    ratio: Any = None,
    nilered: Any = None,
    cells: Any = None,
    voxel_size_um: Any = None,
    names: Any = None,
    axes: str | None = None,
    kind: str | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One field (or time-lapse): tables and a metadata dict for ``quantify.json``."""
    import warnings

    from stainfree.quantify.inputs import frame_interval_from_json, load_masks
    from stainfree.quantify.run import quantify_source

    source = load_masks(masks, axes=axes, names=names, kind=kind)
    n_t, spatial = source.n_frames, source.spatial_shape
    extras = source.extras
    if nilered is None and intensity is None and ratio is None and "nilered" in extras:
        nilered = extras["nilered"]
    if cells is None and "cells" in extras:
        cells = extras["cells"]
    if "json" in extras and "frame_interval_s" not in cfg.model_fields_set:
        interval = frame_interval_from_json(extras["json"])
        if interval is not None:
            cfg = cfg.model_copy(update={"frame_interval_s": interval})
    if nilered is not None:
        intensity, ratio = _quantify_nilered(nilered, n_t, spatial)
    intensity = _quantify_aux(intensity, "intensity image", n_t, spatial)
    ratio = _quantify_aux(ratio, "ratio image", n_t, spatial)
    cells = _quantify_aux(cells, "cell map", n_t, spatial)
    if voxel_size_um is not None:
        vox = tuple(float(v) for v in voxel_size_um)
    else:
        vox = tuple(1.0 if v is None else float(v) for v in source.voxel_size_um)
        if any(v is None for v in source.voxel_size_um[3 - len(spatial) :]):
            warnings.warn(
                f"{source.source}: voxel size unknown; assuming 1 um (pass voxel_size_um / --voxel-size)",
                stacklevel=3,
            )
    tables = quantify_source(
        source, vox, config=cfg, intensity=intensity, ratio=ratio, cells=cells, progress=progress
    )
    meta = {
        "source": source.source,
        "kind": source.kind,
        "frames": n_t,
        "shape": list(spatial),
        "voxel_size_um": list(vox),
        "frame_interval_s": cfg.frame_interval_s,
        "structures": list(cfg.structures or source.names),
    }
    return tables, meta
