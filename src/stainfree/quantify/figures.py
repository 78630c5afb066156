"""Quantification figures (PNG, matplotlib Agg, atomic) and table files (CSV + Parquet)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stainfree.io.atomic import atomic_path

__all__ = ["VESICULAR", "write_figures", "write_tables"]

#: Vesicle-like classes shown in the sphericity-versus-ratio scatter.
VESICULAR: tuple[str, ...] = ("lipid_droplet", "peroxisome", "early_endosome", "late_endosome", "lysosome")


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write every table as ``<name>.csv`` and ``<name>.parquet``; return ``{"<name>.csv": path, ...}``."""
    from stainfree.io.writers import write_table

    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for name, df in tables.items():
        flat = df.copy()
        flat.columns = [str(c) for c in flat.columns]
        for suffix in (".csv", ".parquet"):
            paths[name + suffix] = write_table(out / f"{name}{suffix}", flat)
    return paths


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _volume_count(structures: pd.DataFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt

    per = structures.groupby("structure", sort=False)[["count", "total_volume_um3"]].mean()
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.35 * len(per) + 1.5), sharey=True)
    y = np.arange(len(per))
    axes[0].barh(y, per["count"], color="tab:blue")
    axes[0].set_xlabel("objects (mean over frames)")
    axes[0].set_yticks(y, per.index)
    axes[0].invert_yaxis()
    axes[1].barh(y, per["total_volume_um3"], color="tab:orange")
    axes[1].set_xlabel("total volume (µm³)")
    if (per["total_volume_um3"] > 0).any():
        axes[1].set_xscale(
            "symlog", linthresh=max(float(per["total_volume_um3"][per["total_volume_um3"] > 0].min()), 1e-3)
        )
    fig.suptitle("Count and volume per structure")
    return _save(fig, path)


def _sphericity_ratio(objects: pd.DataFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ves = objects[objects["structure"].isin(VESICULAR)]
    has_ratio = ves["mean_ratio"].notna().any() if len(ves) else False
    xcol, xlabel = ("mean_ratio", "mean emission ratio R/Y") if has_ratio else ("volume_um3", "volume (µm³)")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name in VESICULAR:
        sub = ves[ves["structure"] == name]
        if len(sub):
            ax.scatter(sub[xcol], sub["sphericity"], s=10, alpha=0.7, label=f"{name} ({len(sub)})")
    if not has_ratio:
        ax.set_xscale("log") if len(ves) else None
    ax.set_xlabel(xlabel)
    ax.set_ylabel("sphericity")
    ax.set_ylim(0, 1.05)
    if len(ves):
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no vesicular objects", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("Sphericity of vesicular organelles" + ("" if has_ratio else " (no ratio image given)"))
    return _save(fig, path)


def _contact_heatmap(contacts: pd.DataFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt

    order = list(dict.fromkeys(contacts["structure_a"]))
    mat = (
        contacts.groupby(["structure_a", "structure_b"])["contact_area_fraction"]
        .mean()
        .unstack()
        .reindex(index=order, columns=order)
    )
    fig, ax = plt.subplots(figsize=(0.45 * len(order) + 3, 0.45 * len(order) + 2))
    im = ax.imshow(mat.to_numpy(dtype=float), cmap="viridis", vmin=0)
    ax.set_xticks(range(len(order)), order, rotation=90)
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel("touching structure B")
    ax.set_ylabel("structure A")
    fig.colorbar(im, ax=ax, label="share of A's surface touching B")
    ax.set_title("Organelle contact matrix")
    return _save(fig, path)


def _contacts_over_time(contacts: pd.DataFrame, frame_interval_s: float, path: Path, top: int = 8) -> Path:
    import matplotlib.pyplot as plt

    c = contacts[contacts["structure_a"] < contacts["structure_b"]]
    mean = c.groupby(["structure_a", "structure_b"])["contact_area_um2"].mean().sort_values(ascending=False)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for a, b in mean.index[:top]:
        sub = c[(c["structure_a"] == a) & (c["structure_b"] == b)].groupby("frame")["contact_area_um2"].mean()
        ax.plot(sub.index * frame_interval_s, sub.to_numpy(), marker="o", ms=3, label=f"{a}–{b}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("contact area (µm², mean over fields)")
    ax.set_title("Contacts over time")
    if len(mean):
        ax.legend(fontsize=7)
    return _save(fig, path)


def _event_rates(rates: pd.DataFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt

    r = rates[rates["events"] > 0]
    labels = [
        f"{k}: {a}" if not b else f"{k}: {a}–{b}"
        for k, a, b in r[["kind", "structure_a", "structure_b"]].itertuples(index=False)
    ]
    colours = {"fission": "tab:red", "fusion": "tab:blue", "contact": "tab:green"}
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.3 * max(len(r), 3)))
    ax.barh(range(len(r)), r["events_per_min"], color=[colours.get(k, "0.5") for k in r["kind"]])
    ax.set_yticks(range(len(r)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("events per minute")
    ax.set_title("Event rates" if len(r) else "Event rates (no events)")
    return _save(fig, path)


def _contact_events_over_time(
    events: pd.DataFrame, n_frames: int, dt: float, path: Path, top: int = 8
) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    pairs = events.groupby(["structure_a", "structure_b"]).size().sort_values(ascending=False)
    frames = np.arange(n_frames)
    for a, b in pairs.index[:top]:
        sub = events[(events["structure_a"] == a) & (events["structure_b"] == b)]
        on = (sub["start_frame"].to_numpy()[:, None] <= frames) & (
            frames <= sub["end_frame"].to_numpy()[:, None]
        )
        ax.step(frames * dt, on.sum(axis=0), where="mid", label=f"{a}–{b}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ongoing contact events")
    ax.set_title("Contact events over time")
    if len(pairs):
        ax.legend(fontsize=7)
    return _save(fig, path)


def write_figures(
    tables: dict[str, pd.DataFrame], out_dir: str | os.PathLike, *, frame_interval_s: float = 1.0
) -> dict[str, Path]:
    """Figures of the quantification tables: volume and count per structure, sphericity vs ratio, contact
    matrix, and, for time-lapses, contacts over time, contact events over time and event rates. Returns
    ``{"<name>.png": path}``."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    paths = {
        "volume_count.png": _volume_count(tables["structures"], out / "volume_count.png"),
        "sphericity_ratio.png": _sphericity_ratio(tables["objects"], out / "sphericity_ratio.png"),
        "contact_matrix.png": _contact_heatmap(tables["contacts"], out / "contact_matrix.png"),
    }
    if tables["contacts"]["frame"].nunique() > 1:
        paths["contacts_over_time.png"] = _contacts_over_time(
            tables["contacts"], frame_interval_s, out / "contacts_over_time.png"
        )
        if "event_rates" in tables:
            paths["event_rates.png"] = _event_rates(tables["event_rates"], out / "event_rates.png")
        if "contact_events" in tables and "field" not in tables["contact_events"].columns:
            n_frames = int(tables["contacts"]["frame"].max()) + 1
            paths["contact_events_over_time.png"] = _contact_events_over_time(
                tables["contact_events"], n_frames, frame_interval_s, out / "contact_events_over_time.png"
            )
    return paths
