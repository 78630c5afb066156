"""Bundles for other tools: a bioimage.io model package, or the network alone as ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Literal


def export_model(
    bundle: str | Path,
    out_dir: str | Path,
    *,
    format: Literal["bioimageio", "onnx"] = "bioimageio",
    authors: list[str] | None = None,
    license: str = "CC-BY-4.0",
) -> dict[str, object]:
    """Export a bundle for other tools.

    Parameters
    ----------
    bundle : path
        A ``.stainfree`` bundle.
    out_dir : path
        Receives ``<name>.bioimageio.zip`` (bioimage.io model package, spec 0.5, with PyTorch state dict and
        ONNX weights) or ``<name>.onnx`` (dynamic batch and spatial axes).
    format : {"bioimageio", "onnx"}
        What to write.
    authors, license : list of str, str
        bioimage.io package: author names and the SPDX license of the weights.

    Returns
    -------
    dict
        ``path`` of the export and ``onnx_max_abs_diff``: the largest difference between onnxruntime's and
        PyTorch's output on the package's test input (ONNX weights only; None for a package without them).
    """
    from stainfree.errors import InputError
    from stainfree.export.bioimageio import preprocess, test_input
    from stainfree.export.onnx import export_onnx, onnx_max_difference
    from stainfree.models.bundle import load_bundle

    b = load_bundle(bundle)
    cfg = b.config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = getattr(cfg, "name", "model")
    x = preprocess(test_input(cfg), cfg)
    if format == "onnx":
        path = export_onnx(b.model, x, out / f"{name}.onnx")
        return {"path": path, "onnx_max_abs_diff": onnx_max_difference(path, b.model, x)}
    if format != "bioimageio":
        raise InputError(str(format), "unknown export format (use bioimageio or onnx)")
    from stainfree.export.bioimageio import export_bioimageio

    path = export_bioimageio(b, out / f"{name}.bioimageio.zip", authors=authors, license=license)
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path) as z:
        z.extract("model.onnx", tmp)
        diff = onnx_max_difference(Path(tmp) / "model.onnx", b.model, x)
    return {"path": path, "onnx_max_abs_diff": diff}


def test_package(package: str | Path) -> dict[str, object]:
    """Run bioimage.io's own test of a model package (every weight format against its test tensors).

    Returns
    -------
    dict
        ``status`` ("passed" or "failed") and ``failures``: the messages of the failed checks.
    """
    from bioimageio.core import test_model

    summary = test_model(Path(package))
    failures = [
        f"{d.name}: {'; '.join(str(e.msg) for e in d.errors)}"
        for d in summary.details
        if d.status == "failed"
    ]
    return {"status": summary.status, "failures": failures}
