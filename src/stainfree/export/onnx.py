"""A network as ONNX with dynamic batch and spatial axes, and its check against PyTorch with onnxruntime."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 17


def export_onnx(model: nn.Module, example: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``model`` as ONNX (input ``input``, output ``output``; batch and spatial axes dynamic).

    Parameters
    ----------
    model : nn.Module
        The network (put in eval mode here).
    example : ndarray
        An input of the network's layout, (N, C, Y, X) or (N, C, Z, Y, X), float32; spatial sizes that the
        network accepts (multiples of 2**depth).
    path : path-like
        The ``.onnx`` file (written atomically).

    Returns
    -------
    Path
        The file.
    """
    from stainfree.atomic import atomic_path

    model = model.eval()
    spatial = example.ndim - 2
    names = ("z", "y", "x")[-spatial:]
    axes = {0: "batch", **{2 + i: n for i, n in enumerate(names)}}
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            model,
            (torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32)),),
            str(tmp),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
            opset_version=OPSET,
            dynamo=False,  # TorchScript exporter: 20x faster than torch.export here, same graph for these
        )
    return path


def onnx_max_difference(path: str | os.PathLike, model: nn.Module, x: np.ndarray) -> float:
    """Largest absolute difference between onnxruntime's output for ``x`` and PyTorch's."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    with torch.inference_mode():
        ref = model.eval()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
    return float(np.abs(np.asarray(got) - ref).max())
