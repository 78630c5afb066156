"""A bundle as a bioimage.io model package (spec 0.5): weights as a PyTorch state dict with its architecture
and as ONNX, axes with halo, the normalization as preprocessing where the spec can express it, test tensors, a
cover and documentation; and the bundle's own ``bundle.yaml`` attached, so that stainfree reloads the package
exactly.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.models.bundle import CONFIG, WEIGHTS, Bundle

FNET_CITATION = (
    "Ounkomol et al. 2018, Label-free prediction of three-dimensional fluorescence images from "
    "transmitted-light microscopy, Nature Methods",
    "10.1038/s41592-018-0111-2",
)


def _identifier(name: str, fallback: str) -> str:
    """A bioimage.io identifier from a channel or model name (letters, digits, underscores)."""
    ident = re.sub(r"\W+", "_", str(name)).strip("_")
    return ident if ident and not ident[0].isdigit() else f"{fallback}_{ident}".strip("_")


def _channel_names(names: list[str] | None, n: int, prefix: str) -> list[str]:
    names = list(names or [])
    if len(names) != n:
        names = [f"{prefix}{i}" for i in range(n)]
    out: list[str] = []
    for i, name in enumerate(names):
        ident = _identifier(name, f"{prefix}{i}")
        out.append(ident if ident not in out else f"{ident}_{i}")
    return out


def test_input(config: Any, seed: int = 0) -> np.ndarray:
    """A seeded raw input of the network's layout, (1, C, [Z,] Y, X), with sizes the network accepts."""
    m = 2 ** int(config.model.depth)
    spatial = [max(32, 4 * m)] * 2
    if config.spatial_dims == 3:
        spatial = [2 * m, *spatial]
    rng = np.random.default_rng(seed)
    smooth = rng.standard_normal((1, config.model.in_channels, *spatial)).astype(np.float32)
    return (100.0 + 20.0 * smooth).astype(np.float32)


def preprocess(x: np.ndarray, config: Any) -> np.ndarray:
    """The bundle's input normalization of a (1, C, ...) raw tensor, channel by channel (what the package's
    preprocessing does: per image statistics, or the stored dataset statistics)."""
    from stainfree.data.preprocess import apply_normalization, normalize, ratio_stats

    out = np.empty_like(x, dtype=np.float32)
    ratio_how = _ratio_how(config)
    for c in range(x.shape[1]):
        own = ratio_stats(x[0, c], ratio_how, config.ratio_max) if c == 1 else None
        if own is not None and (config.normalization_scope != "dataset" or ratio_how == "median"):
            out[0, c] = apply_normalization(x[0, c], own)
        elif config.normalization_scope == "dataset" and c < len(config.normalization_stats):
            out[0, c] = apply_normalization(x[0, c], config.normalization_stats[c].model_dump())
        else:
            lo, hi = config.percentile_range
            out[0, c] = normalize(x[0, c], config.normalization, low=lo, high=hi)[0]
    return out


def activation(logits: np.ndarray, task: str) -> np.ndarray:
    """The task's output activation (regression none, binary sigmoid, multiclass softmax over channels)."""
    if task == "binary":
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    if task == "multiclass":
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return logits.astype(np.float32)


def _ratio_how(config: Any) -> str:
    """The bundle's ratio-channel scaling ('image' when the input is not ratiometric)."""
    if config.input_transform != "ratiometric":
        return "image"
    return str(getattr(config, "ratio_normalization", "image"))


def _fixed_mean_std(st: Any) -> tuple[float, float] | None:
    """(mean, std) of a fixed affine normalization x -> (x - mean) / std, None for 'none'."""
    if st.method == "zscore":
        return float(st.mean or 0.0), max(float(st.std or 1.0), 1e-6)
    if st.method == "percentile":
        lo, hi = float(st.low or 0.0), float(st.high or 1.0)
        return lo, (hi - lo) if hi > lo else 1.0
    return None


def _preprocessing(config: Any, axes: list[str]) -> tuple[list[Any], str]:
    """The spec's preprocessing for the bundle's normalization, and a note on what it cannot express.

    The spec applies one step to every channel: a ratiometric bundle whose ratio channel is scaled
    differently from the intensity (``ratio_normalization`` 'fixed' or 'median') with per-image intensity
    statistics cannot be expressed; the package then has no preprocessing and the documentation says what
    to apply (its test input is the normalized tensor). With dataset statistics and 'fixed', one fixed
    per-channel step expresses both channels.
    """
    from bioimageio.spec.model import v0_5 as s

    steps: list[Any] = []
    notes = []
    ids = [s.AxisId(a) for a in axes]
    ratio_how = _ratio_how(config)
    fixed = [_fixed_mean_std(st) for st in config.normalization_stats]
    if ratio_how == "median" or (ratio_how == "fixed" and config.normalization_scope != "dataset"):
        what = (
            f"ratio channel R/Y divided by {config.ratio_max:g} (absolute: 0..{config.ratio_max:g} -> 0..1)"
            if ratio_how == "fixed"
            else "ratio channel R/Y divided by the median of its foreground (> 0) values"
        )
        intensity = (
            f"intensity channel normalized per image ({config.normalization})"
            if config.normalization_scope != "dataset"
            else "intensity channel with the dataset statistics of bundle.yaml"
        )
        notes.append(f"the input normalization ({intensity}; {what}): the package has no preprocessing")
    elif config.normalization_scope == "dataset" and config.normalization_stats:
        if all(f is not None for f in fixed):
            steps.append(
                s.FixedZeroMeanUnitVarianceDescr(
                    kwargs=s.FixedZeroMeanUnitVarianceAlongAxisKwargs(
                        mean=[f[0] for f in fixed if f is not None],
                        std=[f[1] for f in fixed if f is not None],
                        axis=s.AxisId("channel"),
                    )
                )
            )
        else:
            notes.append("dataset-wide statistics of bundle.yaml (apply them before the package)")
    elif config.normalization == "zscore":
        steps.append(s.ZeroMeanUnitVarianceDescr(kwargs=s.ZeroMeanUnitVarianceKwargs(axes=ids)))
    elif config.normalization == "percentile":
        lo, hi = config.percentile_range
        steps.append(
            s.ScaleRangeDescr(
                kwargs=s.ScaleRangeKwargs(axes=ids, min_percentile=float(lo), max_percentile=float(hi))
            )
        )
    if config.input_transform != "none":
        notes.append(f"the {config.input_transform} input transform (give the transformed channels)")
    if config.voxel_size_um is not None:
        notes.append(f"resampling to the voxel size {tuple(config.voxel_size_um)} um (z, y, x)")
    if config.input_mode == "zstack_to_2d":
        notes.append(f"a z-stack of {config.n_z} planes as channels")
    return steps, "; ".join(notes)


def _cover(x: np.ndarray, y: np.ndarray, path: Path) -> Path:
    """A 2:1 cover: the test input's first channel beside the output's (middle plane)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def plane(a: np.ndarray) -> np.ndarray:
        a = a[0, 0]
        return a[a.shape[0] // 2] if a.ndim == 3 else a

    fig, axs = plt.subplots(1, 2, figsize=(8, 4), dpi=64)
    for ax, img, title in zip(axs, (plane(x), plane(y)), ("input", "prediction"), strict=True):
        ax.imshow(img, cmap="gray")
        ax.set_title(title)
        ax.axis("off")
    fig.savefig(path)
    plt.close(fig)
    return path


def _documentation(config: Any, note: str) -> str:
    t = config.training or {}
    inputs = [str(n) for n in (t.get("signal_names") or config.signal_channels or [])]
    outputs = [str(n) for n in (config.class_names or t.get("target_names") or [])]
    lines = [
        f"# {config.name}",
        "",
        f"A stainfree {config.spatial_dims}D {config.task} network ({config.model.architecture}, depth "
        f"{config.model.depth}, {config.model.base_channels} base channels), exported from a stainfree "
        "bundle.",
        "",
        f"- inputs: {', '.join(inputs) or 'see rdf.yaml'}",
        f"- outputs: {', '.join(outputs) or 'see rdf.yaml'}",
        f"- voxel size (z, y, x) um: {config.voxel_size_um}",
        f"- trained for {t.get('steps', '?')} steps, validation r {t.get('best_val_r', 'n/a')}",
        "",
        "The package's preprocessing is the bundle's input normalization."
        + (f" Not expressible in the spec, do it before: {note}." if note else ""),
        "",
        "`bundle.yaml` (attached) is the stainfree description of the same weights: `stainfree predict`",
        "runs this package exactly like the bundle.",
    ]
    return "\n".join(lines) + "\n"


def export_bioimageio(
    bundle: Bundle,
    out: str | os.PathLike,
    *,
    authors: list[str] | None = None,
    license: str = "CC-BY-4.0",
    onnx: bool = True,
) -> Path:
    """Write ``bundle`` as a bioimage.io model package (a ``.zip``, spec 0.5).

    Parameters
    ----------
    bundle : Bundle
        A loaded bundle (:func:`stainfree.models.bundle.load_bundle`).
    out : path-like
        The package file (``<name>.bioimageio.zip``); written atomically.
    authors : list of str, optional
        Author names (default: "stainfree user").
    license : str
        SPDX license identifier of the weights.
    onnx : bool
        Add ONNX weights (converted from the state dict, checked against it when the package is tested).

    Returns
    -------
    Path
        The package.
    """
    import torch
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as s

    from stainfree.atomic import atomic_path
    from stainfree.export.onnx import OPSET, export_onnx
    from stainfree.models.registry import architecture

    cfg: Any = bundle.config
    model = bundle.model.eval()
    out = Path(out)
    dims = int(cfg.spatial_dims)
    axes = ["z", "y", "x"][-dims:]
    m = 2 ** int(cfg.model.depth)
    halo = max(1, m // 2)
    scale = list(cfg.voxel_size_um or (1.0, 1.0, 1.0))[-dims:]
    t = cfg.training or {}
    in_names = _channel_names(t.get("signal_names"), cfg.model.in_channels, "in")
    out_names = _channel_names(cfg.class_names or t.get("target_names"), cfg.model.out_channels, "out")
    pre, note = _preprocessing(cfg, axes)
    post: list[Any] = []
    if cfg.task == "binary":
        post.append(s.SigmoidDescr())
    elif cfg.task == "multiclass":
        post.append(s.SoftmaxDescr(kwargs=s.SoftmaxKwargs(axis=s.AxisId("channel"))))

    with tempfile.TemporaryDirectory(prefix="stainfree-export-") as tmp_dir:
        tmp = Path(tmp_dir)
        x = test_input(cfg)
        xn = preprocess(x, cfg)
        with torch.inference_mode():
            y = activation(model(torch.from_numpy(xn)).numpy(), cfg.task)
        # without an in-package preprocessing the package takes normalized input: so does its test
        np.save(tmp / "test_input.npy", x if pre else xn)
        np.save(tmp / "test_output.npy", y)
        shutil.copy(bundle.path / WEIGHTS, tmp / WEIGHTS)
        shutil.copy(bundle.path / CONFIG, tmp / CONFIG)
        module, name, kwargs = architecture(cfg.model)
        if module.startswith("stainfree."):  # our own network: ship its (torch-only) source file
            import stainfree.models.unet as unet_module

            shutil.copy(str(unet_module.__file__), tmp / "unet.py")
            arch: Any = s.ArchitectureFromFileDescr(
                source=tmp / "unet.py", callable=s.Identifier(name), kwargs=kwargs
            )
        else:
            arch = s.ArchitectureFromLibraryDescr(
                import_from=module, callable=s.Identifier(name), kwargs=kwargs
            )
        weights: dict[str, Any] = {
            "pytorch_state_dict": s.PytorchStateDictWeightsDescr(
                source=tmp / WEIGHTS,
                architecture=arch,
                pytorch_version=s.Version(torch.__version__.split("+")[0]),
            )
        }
        if onnx:
            export_onnx(model, xn, tmp / "model.onnx")
            weights["onnx"] = s.OnnxWeightsDescr(
                source=tmp / "model.onnx", opset_version=OPSET, parent="pytorch_state_dict"
            )
        (tmp / "README.md").write_text(_documentation(cfg, note))
        _cover(x, y, tmp / "cover.png")

        in_axes: list[Any] = [s.BatchAxis(), s.ChannelAxis(channel_names=[s.Identifier(n) for n in in_names])]
        out_axes: list[Any] = [
            s.BatchAxis(),
            s.ChannelAxis(channel_names=[s.Identifier(n) for n in out_names]),
        ]
        for a, sc in zip(axes, scale, strict=True):
            in_axes.append(
                s.SpaceInputAxis(
                    id=s.AxisId(a),
                    size=s.ParameterizedSize(min=2 * m, step=m),
                    scale=float(sc),
                    unit="micrometer",
                )
            )
            out_axes.append(
                s.SpaceOutputAxisWithHalo(
                    id=s.AxisId(a),
                    size=s.SizeReference(tensor_id=s.TensorId("input"), axis_id=s.AxisId(a)),
                    halo=halo,
                    scale=float(sc),
                    unit="micrometer",
                )
            )
        task_tag = "virtual-staining" if cfg.task == "regression" else "segmentation"
        from pydantic import ValidationError

        try:
            descr = s.ModelDescr(
                name=f"stainfree {_identifier(cfg.name, 'model')}"[:64],  # the spec wants 5-64 characters
                description=f"stainfree {dims}D {cfg.task} network {cfg.name} ({cfg.model.architecture})",
                authors=[s.Author(name=a) for a in (authors or ["stainfree user"])],
                cite=[s.CiteEntry(text=FNET_CITATION[0], doi=s.Doi(FNET_CITATION[1]))],
                license=s.LicenseId(license),
                documentation=s.FileDescr(source=tmp / "README.md"),
                covers=[s.FileDescr(source=tmp / "cover.png")],
                attachments=[s.FileDescr(source=tmp / CONFIG)],
                tags=["stainfree", task_tag, f"{dims}d", "pytorch", "fluorescence-light-microscopy"],
                inputs=[
                    s.InputTensorDescr(
                        id=s.TensorId("input"),
                        axes=in_axes,
                        test_tensor=s.FileDescr(source=tmp / "test_input.npy"),
                        preprocessing=pre,
                    )
                ],
                outputs=[
                    s.OutputTensorDescr(
                        id=s.TensorId("output"),
                        axes=out_axes,
                        test_tensor=s.FileDescr(source=tmp / "test_output.npy"),
                        postprocessing=post,
                    )
                ],
                weights=s.WeightsDescr(**weights),
                config={"stainfree": {"bundle": CONFIG, "weights": WEIGHTS, "task": cfg.task}},
            )
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InputError(bundle.path, f"cannot be described for bioimage.io ({problems})") from None
        if not isinstance(descr, s.ModelDescr):  # pragma: no cover - the spec refused what we built
            raise InputError(bundle.path, f"could not describe the bundle for bioimage.io ({descr})")
        with atomic_path(out) as tmp_out:
            save_bioimageio_package(descr, output_path=tmp_out)
    return out
