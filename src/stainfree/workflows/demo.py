"""The demo: stainfree end to end on simulated cells, written as one HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from stainfree.workflows.inspect import simulate
from stainfree.workflows.organelles import segment, train_catalog
from stainfree.workflows.quantify import quantify
from stainfree.workflows.staining import evaluate, predict, train

if TYPE_CHECKING:
    import pandas as pd

    from stainfree.config import DemoConfig


def demo(
    out_dir: str | Path = "demo_output",
    config: DemoConfig | str | Path | None = None,
    *,
    progress: bool = True,
) -> Path:
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


def _demo_run(cfg: DemoConfig, out: Path, progress: bool) -> Path:
    """The steps of :func:`demo` (see there)."""
    import pandas as pd

    from stainfree.evaluate.figures import plot_segmentation_bars
    from stainfree.io.manifest import read_manifest
    from stainfree.io.writers import write_table
    from stainfree.report.html import Section, write_report

    timings: dict[str, float] = {}

    def step(name: str) -> _DemoStep:
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
                bundles, str(row.brightfield), out / "predictions" / f"{row.field}.ome.tif", progress=False
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
                segment(str(row.nilered), seg_bundles, out / "segmentation", name=str(row.field))
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
                first = held_out.iloc[0]
                quant_dir = out / "quantification"
                pred_q = quantify(
                    segmented[0]["masks"],
                    quant_dir / "segmented",
                    nilered=first["nilered"],
                    cells=first["cells"],
                )
                true_q = quantify(Path(first["labels"]).parent, quant_dir / "truth")
                comparison = _demo_compare_counts(pred_q["structures"], true_q["structures"], trained)
                write_table(quant_dir / "segmented_vs_truth.csv", comparison)
            sections.append(
                Section(
                    "Quantification",
                    f"Objects of {first['field']}: count, volume, sphericity and emission ratio per "
                    "compartment, and contacts between compartments, measured on the segmentation and on the "
                    "exact masks.",
                    figures=sorted((quant_dir / "segmented").glob("*.png"))
                    + sorted(p for p in (quant_dir / "truth").glob("*.png") if "contact" in p.name),
                    tables=[("Segmented vs true organelles", comparison)],
                )
            )

    if cfg.organelle_nets and cfg.timelapse_frames > 1:
        with step("time-lapse"):
            sections.append(_demo_timelapse(cfg, out / "timelapse", seg_bundles))

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

    def __exit__(self, *exc: object) -> None:
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


def _demo_train_staining(manifest: Path, structure: str, out: Path, cfg: DemoConfig, progress: bool) -> Path:
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


def _demo_timelapse(cfg: DemoConfig, out: Path, bundles: list[Path]) -> Any:
    """Simulate a short time-lapse with known events, segment and track it, make its multi-colour movie."""
    import pandas as pd

    from stainfree.report.html import Section
    from stainfree.workflows.compose import compose
    from stainfree.workflows.timelapse import timelapse

    n_t = cfg.timelapse_frames
    events = cfg.timelapse_events if n_t >= 6 else None
    manifest = simulate(
        out / "data", n_fields=1, n_frames=n_t, shape=cfg.timelapse_shape, seed=cfg.seed + 1, events=events
    )
    field = manifest.parent / "field_000"
    nilered = field / "nilered.ome.tif"
    result = timelapse(nilered, bundles, out, name="timelapse")
    colour = compose(result["segmentation"]["masks"], out / "colour", nilered=nilered, movie="mp4", fps=3)
    tables = result["tables"]
    # the cell volumes (cytosol, nucleus, outside) split and merge as segmentations flicker: organelles only
    bulk = {"extracellular", "cytosol", "nucleus"}
    found = tables.get("track_events", pd.DataFrame(columns=["structure", "kind"]))
    found = found[~found["structure"].isin(bulk)]
    contacts = tables.get("contact_events", pd.DataFrame(columns=["structure_a", "structure_b"]))
    contacts = contacts[~contacts["structure_a"].isin(bulk) & ~contacts["structure_b"].isin(bulk)]
    counts = found.groupby(["structure", "kind"]).size().rename("events").reset_index()
    truth = pd.read_csv(field / "events.csv") if (field / "events.csv").exists() else pd.DataFrame()
    played = truth["kind"].value_counts().to_dict() if len(truth) else {}
    size = " x ".join(map(str, cfg.timelapse_shape))
    asked = " / ".join(map(str, cfg.timelapse_events))
    text = (
        f"One simulated field of {n_t} frames ({size} voxels) in which the simulator played "
        f"{played.get('fission', 0)} mitochondrial fission(s), {played.get('fusion', 0)} fusion(s) and "
        f"{played.get('contact', 0)} organelle contact(s) at known frames (asked for {asked}: each event "
        "needs room around it). The organelle networks segment it frame by frame (memory: one frame); "
        "objects are tracked by overlap, with fission, fusion and contact events; the movie is the in-silico "
        "multi-colour image (each compartment's mask times the Nile Red intensity, in the catalog colours). "
        "The demo's networks cover lipid droplets, plasma membrane and the cell volumes only, so "
        "mitochondrial events need the MITO network (benchmarks/timelapse.py scores events from the true "
        "masks)." + ("" if len(counts) else " No organelle fission or fusion was found on this segmentation.")
    )
    section_tables = [("Fission and fusion events found on the segmentation (organelles)", counts)]
    if len(contacts):
        section_tables.append(("Contact events (first 10)", contacts.head(10)))
    if len(truth):
        section_tables.append(("Events played by the simulator (truth)", truth))
    figures = [colour["composite"]]
    figures += [p for n, p in result["figures"].items() if "contact" in n or "event" in n]
    movies = [colour["movie"]] if colour.get("movie") else []
    return Section("Live-cell anatomy over time", text, figures=figures, tables=section_tables, movies=movies)


def _demo_trained_compartments(nets: list[str]) -> list[str]:
    """Compartments covered by the named catalog networks."""
    from stainfree.catalog import load_catalog

    return [c.name for n in load_catalog("organelles_v1").networks if n.name in nets for c in n.classes]


def _demo_compare_counts(pred: pd.DataFrame, truth: pd.DataFrame, structures: list[str]) -> pd.DataFrame:
    """Object count and total volume per compartment: segmentation next to the truth."""
    cols = ["structure", "count", "total_volume_um3"]
    keep = [c for c in cols if c in pred.columns and c in truth.columns]
    merged = truth[keep].merge(pred[keep], on="structure", how="outer", suffixes=("_true", "_segmented"))
    return merged[merged["structure"].isin(structures)].reset_index(drop=True)
