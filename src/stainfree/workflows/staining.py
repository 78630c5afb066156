"""Virtual staining: pair images into a manifest, train, predict (one bundle or a collection), evaluate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from stainfree.config import TrainingJob
    from stainfree.types import ImageMeta


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
    job_or_yaml: TrainingJob | str | Path,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    max_time: float | str | None = None,
    progress: bool = True,
) -> Path:
    """Train a network from a :class:`~stainfree.config.TrainingJob` or its YAML file; returns the bundle.

    A relative manifest path in a YAML file is relative to the YAML file; ``output_dir`` relative to the
    current folder. ``resume`` continues from ``<output_dir>/checkpoints/last.ckpt``; ``max_steps`` and
    ``max_time`` (seconds or e.g. ``"15m"``) override the configured budget.
    """
    from stainfree.config import TrainConfig, TrainingJob, load_yaml, validate
    from stainfree.train.fit import fit

    if isinstance(job_or_yaml, TrainingJob):
        job = job_or_yaml
    else:
        path = Path(job_or_yaml)
        job = load_yaml(TrainingJob, path)
        if job.data.manifest is not None and not job.data.manifest.is_absolute():
            job.data.manifest = (path.resolve().parent / job.data.manifest).resolve()
    update: dict[str, Any] = {}
    if max_steps is not None:
        update["max_steps"] = int(max_steps)
    if max_time is not None:
        update["max_time"] = max_time
    if update:
        train_cfg = validate(TrainConfig, {**job.train.model_dump(), **update}, source="train options")
        job = job.model_copy(update={"train": train_cfg})
    from stainfree.lock import output_lock

    with output_lock(job.output_dir):
        return fit(job, resume=resume, progress=progress)


def pretrain(
    images: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    job: TrainingJob | str | Path | None = None,
    max_time: float | str | None = None,
    max_steps: int | None = None,
    mask_fraction: float = 0.5,
    name: str = "pretrained",
    progress: bool = True,
) -> Path:
    """Self-supervised pretraining on label-free images alone: the network learns to fill in hidden blocks
    of its input (masked-image modelling), so that its encoder knows the modality before it sees a target.

    Give every unlabeled image you have, including those to be predicted later: no target is used. Then
    start the real training from the result with ``train.init_from: <bundle>``: the weights that fit are
    loaded (all but the output layer when the channel counts differ), and the recipe takes the network's
    depth and width from it.

    Parameters
    ----------
    images : path, folder, glob pattern or list of those
        Label-free images.
    out_dir : path
        Receives ``<name>.stainfree`` and the run's checkpoints and log.
    job : TrainingJob or YAML path, optional
        The training job this pretraining prepares: its data settings (input mode, channels, voxel size,
        normalization, patch) and network are used, its targets ignored.
    max_time, max_steps : optional
        Budget (see :class:`~stainfree.config.TrainConfig`); default: the job's.
    mask_fraction : float
        Share of each input patch hidden under noise.
    name : str
        Bundle name.
    progress : bool
        Show progress bars.

    Returns
    -------
    Path
        The pretrained bundle.
    """
    import pandas as pd

    from stainfree.config import TrainingJob, load_yaml
    from stainfree.errors import InputError
    from stainfree.io.manifest import write_manifest
    from stainfree.train.fit import fit

    paths = _image_paths(images, "label-free")
    if not paths:
        raise InputError(str(images), "no images to pretrain on")
    base = job if isinstance(job, TrainingJob) else load_yaml(TrainingJob, job) if job else TrainingJob()
    out = Path(out_dir)
    manifest = write_manifest(
        pd.DataFrame({"signal": [str(p) for p in paths], "target": [str(p) for p in paths]}),
        out / "pretrain_manifest.csv",
    )
    data = base.data.model_copy(
        update={
            "manifest": manifest,
            "signal_column": "signal",
            "target_column": "target",
            "target_channels": base.data.signal_channels,
            "target_normalization": "zscore",
            "use_split_column": False,
            "foreground_fraction": 0.0,
        }
    )
    tc = base.train
    augment = tc.augment.model_copy(update={"enabled": True, "mask_fraction": float(mask_fraction)})
    train_cfg = tc.model_copy(
        update={
            "task": "regression",
            "loss": "mse",
            "augment": augment,
            "max_time": max_time if max_time is not None else tc.max_time,
            "max_steps": max_steps if max_steps is not None else tc.max_steps,
            "monitor": "val_loss",
            "init_from": None,
            "freeze_encoder": False,
            "pos_weight": None,
            "class_weights": None,
        }
    )
    pre = base.model_copy(update={"name": name, "data": data, "train": train_cfg, "output_dir": out})
    return fit(TrainingJob.model_validate(pre.model_dump()), progress=progress)


def write_default_training_job(path: str | Path, **overrides: Any) -> Path:
    """Write a default :class:`~stainfree.config.TrainingJob` as YAML (a starting point to edit): the
    little-data recipe, settings left empty (null) chosen by ``recipe: auto``, a 15-minute budget."""
    from stainfree.config import TrainConfig, TrainingJob, save_yaml

    overrides.setdefault("train", TrainConfig(max_time="15m"))
    return save_yaml(TrainingJob(**overrides), path)


_IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr", ".czi", ".png")


def _image_paths(spec: str | Path | Sequence[str | Path] | None, what: str) -> list[Path]:
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
    bundles: str | Path | Sequence[str | Path],
    input: str | Path,
    output: str | Path,
    *,
    tile: list[int] | None = None,
    overlap: float = 0.1875,
    sw_batch_size: int = 1,
    bf16: bool | None = None,
    device: str = "cpu",
    progress: bool = True,
    tta: bool = False,
    uncertainty: bool = False,
    compile: bool = False,
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
    tile, overlap, sw_batch_size, bf16, device, tta, uncertainty, compile
        See :class:`stainfree.config.PredictConfig` (``uncertainty`` needs ``tta`` and one bundle; ``bf16``
        None: bfloat16 where the device computes it natively).
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        ``{"image": path}`` and, for a collection, ``"merge": path``.
    """
    from stainfree.inference.collection import predict_collection_file
    from stainfree.inference.predict import predict_file

    paths = list(bundles) if isinstance(bundles, (list, tuple)) else [bundles]
    cfg = predict_options(
        len(paths),
        tile=tile,
        overlap=overlap,
        sw_batch_size=sw_batch_size,
        bf16=bf16,
        device=device,
        tta=tta,
        uncertainty=uncertainty,
        compile=compile,
    )
    from stainfree.inference.windows import native_bf16

    kwargs: dict[str, Any] = {
        "roi_size": tuple(cfg.tile) if cfg.tile else None,
        "overlap": cfg.overlap,
        "sw_batch_size": cfg.sw_batch_size,
        "bf16": native_bf16(cfg.device) if cfg.bf16 is None else cfg.bf16,
        "device": cfg.device,
        "progress": progress,
        "tta": cfg.tta,
        "compile": cfg.compile,
    }
    from stainfree.lock import output_lock

    out = Path(output)
    from stainfree.atomic import PARTIAL_SUFFIX

    with output_lock(out.parent, name=f".{out.name}.stainfree.lock", stale=f".{out.name}.*{PARTIAL_SUFFIX}"):
        if len(paths) == 1:
            return {"image": predict_file(paths[0], input, output, uncertainty=cfg.uncertainty, **kwargs)}
        return predict_collection_file(paths, input, output, **kwargs)


def _read_czyx(path: Path) -> tuple[np.ndarray, ImageMeta]:
    """An image as a ``(C, Z, Y, X)`` array in memory, and its metadata."""
    import numpy as np

    from stainfree.io.readers import as_czyx, read_image

    array, meta = read_image(path)
    return np.asarray(as_czyx(array, meta.axes)), meta


def _match_channels(target: np.ndarray, t_meta: ImageMeta, names: list[str], source: Path) -> np.ndarray:
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


def _truth_for_segmentation(
    target: np.ndarray, t_meta: ImageMeta, names: list[str], task: str, source: Path
) -> np.ndarray:
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
    predictions: str | Path | Sequence[str | Path],
    targets: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    task: str = "regression",
    clean_targets: str | Path | Sequence[str | Path] | None = None,
    controls: str | Path | Sequence[str | Path] | None = None,
    signals: str | Path | Sequence[str | Path] | None = None,
    threshold: float = 0.5,
    nmse_scale: str = "truth_zscore",
) -> pd.DataFrame:
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
        control_map: dict[str, list[np.ndarray]] | None = None
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


def predict_options(n_bundles: int, **options: Any) -> Any:
    """The prediction options as a validated :class:`stainfree.config.PredictConfig`.

    Raises a one-line InputError for uncertainty without test-time augmentation or with several bundles.
    """
    from stainfree.config import PredictConfig, validate
    from stainfree.errors import InputError

    cfg = validate(PredictConfig, options, source="predict options")
    if cfg.uncertainty and not cfg.tta:
        raise InputError("predict options", "uncertainty is the spread of the test-time views: add tta")
    if cfg.uncertainty and n_bundles > 1:
        raise InputError("predict options", "uncertainty works with one bundle at a time")
    return cfg
