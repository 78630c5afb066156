"""Organelles from one dye: train the catalog networks, fine-tune, segment; ground truth and FG-nets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from stainfree.config import AugmentConfig, CatalogNetwork, OrganelleCatalog, TrainingJob


def _catalog_training_manifest(
    sim_or_manifest: str | Path,
    net: CatalogNetwork,
    out_dir: Path,
    *,
    splits: tuple[str, ...] = ("train", "val"),
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
    net: CatalogNetwork,
    manifest: str | Path,
    output_dir: str | Path,
    *,
    catalog: OrganelleCatalog | None = None,
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
    channel_alignment: str | tuple[float, float, float] = "auto",
    ratio_normalization: str | None = None,
) -> TrainingJob:
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
    included). ``channel_alignment`` (default ``auto``) moves red onto yellow before the ratio.
    ``ratio_normalization`` (default: the catalog's, ``fixed``) scales the ratio channel: ``image``
    (z-score per image), ``fixed`` (R/Y 0..3 -> 0..1, absolute) or ``median`` (over the field's median).
    """
    from stainfree.catalog import load_catalog
    from stainfree.config import DataConfig, ModelConfig, TrainConfig, TrainingJob

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
        channel_alignment=channel_alignment,
        ratio_normalization=ratio_normalization or cat.ratio_normalization,
        normalization="zscore",
        patch_shape=list(patch_shape),
        foreground_fraction=net.foreground_fraction if foreground_fraction is None else foreground_fraction,
        # a net whose classes fill the volume (no background) has label 0 as a class of its own
        foreground_labels=None
        if net.task == "binary" or net.background_class
        else list(range(net.n_outputs)),
        validation="images",
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
        augment=catalog_augment(augment),
        ema_decay=None,
        gradient_clip=None,
        accelerator="cpu",
        devices=1,
        seed=seed,
        init_from=Path(init_from) if init_from is not None else None,
        freeze_encoder=freeze_encoder,
    )
    return TrainingJob(name=net.name, data=data, model=model, train=train, output_dir=Path(output_dir))


def publish_bundle(bundle: Path, dest: Path) -> Path:
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
        bundles.append(publish_bundle(bundle, out / f"{net.name}.stainfree"))
    return bundles


def fine_tune_segmentation(
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
    from stainfree.config import BundleConfig, CatalogClass, CatalogNetwork
    from stainfree.errors import InputError
    from stainfree.models.bundle import load_bundle
    from stainfree.train.fit import fit

    b = load_bundle(bundle)
    cfg = b.config
    assert isinstance(cfg, BundleConfig)  # load_bundle reads a BundleConfig (Bundle.config is typed object)
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
    overrides: dict[str, Any] = {
        "spatial_dims": cfg.spatial_dims,
        "input_transform": cfg.input_transform,
        "depth": cfg.model.depth,
        "base_channels": cfg.model.base_channels,
        "patch_shape": list(cfg.patch_shape) or None,
        "voxel_size_um": cfg.voxel_size_um,
        "channel_alignment": cfg.channel_alignment,
        "ratio_normalization": cfg.ratio_normalization,
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
    return publish_bundle(tuned, out / f"{net.name}.stainfree")


def segment(
    nilered_image: str | Path,
    bundles: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    catalog: str | Path | None = None,
    threshold: float | None = None,
    name: str | None = None,
    progress: bool = False,
    tta: bool = False,
    alignment: str | tuple[float, float, float] = "auto",
) -> dict[str, Path]:
    """Segment the 15 compartments of one Nile Red image (or time-lapse) with the catalog's bundles.

    A time-lapse (T x C x Z x Y x X) is read lazily and segmented one frame at a time
    (:func:`stainfree.workflows.timelapse.segment_series_files`): the outputs get a leading T axis.

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
    threshold : float, optional
        Probability threshold of every binary net; None = each bundle's own (chosen on validation).
    tta : bool
        Test-time augmentation of every network (8 views, 8x the time).
    alignment : {"auto", "none"} or (z, y, x)
        Red moved onto yellow for the intensity written with the masks (each network aligns its own input
        as its bundle says); the shift goes to ``<name>_alignment.json``.

    Returns
    -------
    dict
        Paths of ``masks``, ``labels``, ``ngff``, ``overlay`` and ``alignment``.
    """
    from dataclasses import replace

    import numpy as np

    from stainfree.catalog import load_catalog
    from stainfree.data.preprocess import channel_indices
    from stainfree.errors import InputError
    from stainfree.inference.segment import nilered_channel_names, write_segmentation
    from stainfree.inference.segment import segment as run_segment
    from stainfree.io.readers import as_czyx, read_image
    from stainfree.lock import output_lock

    with output_lock(out_dir):  # held from the start: a second run on this folder is refused at once
        _, peek = read_image(nilered_image, intensities=True, lazy=True)
        if "T" in peek.axes:  # a time-lapse: frame by frame, bounded memory
            from stainfree.workflows.timelapse import segment_series_files

            return segment_series_files(
                nilered_image,
                bundles,
                out_dir,
                catalog=catalog,
                threshold=threshold,
                name=name,
                progress=progress,
                tta=tta,
                alignment=alignment,
            )
        arr, meta = read_image(nilered_image, intensities=True)
        czyx = np.asarray(as_czyx(np.asarray(arr), meta.axes))
        if czyx.shape[0] < 2:
            raise InputError(nilered_image, "needs two channels (yellow and red Nile Red emission)")
        names = nilered_channel_names(meta.channel_names, czyx.shape[0])
        meta = replace(meta, channel_names=tuple(names), axes="CZYX", shape=czyx.shape)
        iy, ir = channel_indices(["yellow", "red"], names, czyx.shape[0], str(nilered_image))
        masks, labels = run_segment(
            bundles if isinstance(bundles, str | Path) else list(bundles),
            czyx,
            meta,
            catalog=catalog,
            threshold=threshold,
            progress=progress,
            tta=tta,
        )
        from stainfree.data.align import align_for_ratio
        from stainfree.io.writers import write_json

        red, shift = align_for_ratio(czyx[iy], czyx[ir], alignment)
        intensity = (czyx[iy].astype(np.float32) + red) / 2
        stem = name or Path(nilered_image).name.split(".")[0]
        vox = meta.voxel_size_um
        record = {
            "source": str(nilered_image),
            "red_onto_yellow_shift_px": list(shift),
            "red_onto_yellow_shift_um": [
                None if v is None else s * v for s, v in zip(shift, vox, strict=True)
            ],
            "alignment": alignment if isinstance(alignment, str) else list(alignment),
        }
        alignment_path = write_json(Path(out_dir) / f"{stem}_alignment.json", record)
        paths = write_segmentation(
            out_dir,
            masks,
            labels,
            intensity,
            voxel_size_um=meta.voxel_size_um,
            name=stem,
            priority=load_catalog(catalog or "organelles_v1").label_priority,
        )
        return {**paths, "alignment": alignment_path}


def catalog_augment(enabled: bool) -> AugmentConfig:
    """The augmentation the catalog networks were measured with (free rotation, zoom 0.9-1.1, gain
    0.75-1.5 of the intensity channel): the organelle nets keep their benchmarked recipe; the little-data
    defaults (90-degree turns, offset, noise, weight average) are not yet measured on them."""
    from stainfree.config import AugmentConfig

    return AugmentConfig(
        enabled=enabled,
        rotation_degrees=180.0,
        scale_range=(0.9, 1.1),
        gain_range=(0.75, 1.5),
        rot90=False,
        offset_range=(0.0, 0.0),
        noise_std=0.0,
    )
