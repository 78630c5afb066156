"""Cross-modal registration: predict the target's modality from EM tiles and place them in a large image.

``register`` (tiles + target [+ bundle] -> per-tile transform JSON, OME-TIFF in the target frame, overlay PNG,
and a table over tiles) and ``simulate_clem`` (a simulated conjugate case with the known transforms).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from skimage.transform import SimilarityTransform

    from stainfree.register import Registration
    from stainfree.types import ImageMeta

#: Reflection padding (pixels of the resampled tile) around a tile before prediction, as in the paper.
PREDICT_PAD = 32


def _read_2d(path: Path, channel: int = 0) -> tuple[np.ndarray, ImageMeta]:
    """A 2D image (one channel of a multi-channel one) as float32, and its metadata."""
    from stainfree.errors import InputError
    from stainfree.io.readers import as_czyx, read_image

    array, meta = read_image(path)
    czyx = np.asarray(as_czyx(array, meta.axes), dtype=np.float32)
    if czyx.shape[1] != 1:
        raise InputError(path, f"registration needs 2D images, got {czyx.shape[1]} z-planes")
    if not 0 <= channel < czyx.shape[0]:
        raise InputError(path, f"has {czyx.shape[0]} channel(s), channel {channel} asked for")
    return czyx[channel, 0], meta


def _pixel_um(meta: ImageMeta, given: float | None) -> float | None:
    if given is not None:
        return float(given)
    x = meta.voxel_size_um[2]
    return float(x) if x else None


def _predict_tile(bundle: Any, tile: np.ndarray, device: str) -> np.ndarray:
    """The target modality predicted from a (resampled) tile, with reflection padding, in target units."""
    from stainfree.inference.predict import predict_with_bundle

    pad = min(PREDICT_PAD, min(tile.shape) - 1)
    padded = np.pad(tile, pad, mode="reflect")
    pred, _ = predict_with_bundle(bundle, padded, None, device=device)
    pred = np.asarray(pred, dtype=np.float32).reshape(-1, *padded.shape)[0]
    return pred[pad : pad + tile.shape[0], pad : pad + tile.shape[1]]


def _u8(a: np.ndarray, low: float, high: float) -> np.ndarray:
    return (np.clip((np.nan_to_num(a, nan=low) - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def _overlay(
    target: np.ndarray, em: np.ndarray, tile_to_target: SimilarityTransform, shape: Sequence[int]
) -> np.ndarray:
    """RGB of the tile's surroundings: target in green, registered EM in magenta."""
    corners = tile_to_target(
        np.array([[0, 0], [shape[1] - 1, 0], [0, shape[0] - 1], [shape[1] - 1, shape[0] - 1]])
    )
    margin = 0.1 * float(np.ptp(corners[:, 0]) + np.ptp(corners[:, 1]))
    x0 = int(np.clip(corners[:, 0].min() - margin, 0, target.shape[1] - 1))
    x1 = int(np.clip(corners[:, 0].max() + margin + 1, x0 + 1, target.shape[1]))
    y0 = int(np.clip(corners[:, 1].min() - margin, 0, target.shape[0] - 1))
    y1 = int(np.clip(corners[:, 1].max() + margin + 1, y0 + 1, target.shape[0]))
    t, e = target[y0:y1, x0:x1], em[y0:y1, x0:x1]
    g = _u8(t, *np.percentile(t, (0.5, 99.8)))
    fe = e[np.isfinite(e)]
    m = _u8(e, *(np.percentile(fe, (0.5, 99.5)) if fe.size else (0.0, 1.0)))
    return np.stack([m, g, m], axis=-1)


def _truth(path: str | Path | None) -> dict[str, np.ndarray]:
    """Known tile -> target transforms: JSON ``{tile file name: {"matrix": 3x3}}``."""
    from stainfree.errors import InputError
    from stainfree.io.readers import read_json

    if path is None:
        return {}
    data = read_json(path)
    try:
        return {str(k): np.asarray(v["matrix"], dtype=np.float64).reshape(3, 3) for k, v in data.items()}
    except (AttributeError, KeyError, TypeError, ValueError):
        raise InputError(path, 'expected {"<tile file name>": {"matrix": [[3 x 3]]}, ...}') from None


@dataclass
class TileResult:
    """One tile's registration: the table row, the transform (None when skipped), the prediction."""

    row: dict[str, Any]
    tile_to_target: SimilarityTransform | None
    prediction: np.ndarray
    registration: Registration | None


def prepare_tile(
    tile: np.ndarray, *, bundle: Any = None, factor: float = 1.0, device: str = "cpu"
) -> tuple[np.ndarray, SimilarityTransform]:
    """Resample a tile to the target pixel size and predict the target modality from it.

    Parameters
    ----------
    tile : ndarray (h, w)
        The EM (or same-modality) tile.
    bundle : Bundle, optional
        A loaded EM -> target bundle; None z-scores the resampled tile instead (same-modality registration).
    factor : float
        Tile pixel size / target pixel size.
    device : str
        Prediction device.

    Returns
    -------
    prediction : ndarray of float32
        On the resampled grid; a regression bundle's units are z-scores of the target.
    prediction_to_tile : SimilarityTransform
        Maps prediction pixels to tile pixels.
    """
    from stainfree.register import rescale
    from stainfree.register.match import zscore

    small, small_to_tile = rescale(tile, factor)
    pred = _predict_tile(bundle, small, device) if bundle is not None else zscore(small)
    return pred, small_to_tile


def content_reference(predictions: Sequence[np.ndarray]) -> tuple[float, float]:
    """Background (median) and maximum (99.9th percentile) of predictions pooled over every tile of a run.

    The content filter compares each tile with this shared scale, so that an empty tile does not pass on its
    own noise and a model's shrunken output range (regression to the mean) does not fail every tile.
    """
    pooled = np.concatenate([np.asarray(p, dtype=np.float32).ravel() for p in predictions])
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        return 0.0, 0.0
    return float(np.median(pooled)), float(np.percentile(pooled, 99.9))


def register_tile(
    prediction: np.ndarray,
    prediction_to_tile: SimilarityTransform,
    target_z: np.ndarray,
    *,
    reference: tuple[float, float],
    angles: Sequence[float] = (-10.0, -5.0, 0.0, 5.0, 10.0),
    content_fraction: float = 0.01,
    check_content: bool = True,
    smooth: float = 0.0,
    refine: Literal["flow", "ncc"] = "flow",
) -> TileResult:
    """Filter a predicted tile by content and register it in the target.

    Parameters
    ----------
    prediction, prediction_to_tile
        From :func:`prepare_tile`.
    target_z : ndarray (H, W)
        The target image, z-scored (the units of a regression bundle's predictions).
    reference : (background, maximum)
        Scale of the content filter (:func:`content_reference`): a tile passes when more than
        ``content_fraction`` of its pixels exceed ``background + 0.5 (maximum - background)``.
    angles : sequence of float
        Rotations searched by the template match.
    content_fraction : float
        Content filter threshold (paper: 1%).
    check_content : bool
        Apply the content filter.
    smooth : float
        Gaussian sigma (target pixels) applied to prediction and target before registering.
    refine : {"flow", "ncc"}
        See :func:`stainfree.register.register`; with ``"ncc"`` the target side passes the same content
        filter too (more than ``content_fraction`` of the target under the registered tile above half its
        robust maximum) when ``check_content``.

    Returns
    -------
    TileResult
        ``row`` has ``content_fraction``, ``skipped`` and, when registered, the transform's parameters
        (tile pixels -> target pixels) and the registration's scores.
    """
    from stainfree.register import compose, has_content, inverse, params, register
    from stainfree.register import content_fraction as fraction_above

    bg, top = reference
    frac = fraction_above(prediction, bg + 0.5 * (top - bg))
    row: dict[str, Any] = {"content_fraction": round(frac, 5)}
    if check_content and not has_content(prediction, top, background=bg, fraction=content_fraction):
        row.update(skipped=True, converged=False, reason="too little content")
        return TileResult(row, None, prediction, None)
    reg = register(
        prediction,
        target_z,
        angles=angles,
        smooth=smooth,
        residual_px=max(1.0, smooth),
        refine=refine,
        # the flow's inlier test already fails on empty target; the correlation alone does not
        target_content=content_fraction if check_content and refine == "ncc" else 0.0,
    )
    tile_to_target = compose(reg.transform, inverse(prediction_to_tile))
    row.update({"skipped": False, **reg.summary(), **params(tile_to_target)})
    return TileResult(row, tile_to_target, prediction, reg)


def register(
    tiles: str | Path | Sequence[str | Path],
    target: str | Path,
    out: str | Path,
    *,
    bundle: str | Path | None = None,
    predict: bool = True,
    tile_pixel_um: float | None = None,
    target_pixel_um: float | None = None,
    truth: str | Path | None = None,
    max_rotation_deg: float = 10.0,
    content_fraction: float = 0.01,
    smooth: float = 0.0,
    refine: Literal["flow", "ncc"] = "flow",
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Path]:
    """Register EM tiles (or same-modality tiles) inside a large target image.

    Each tile is resampled to the target's pixel size, the target modality is predicted from it with the
    bundle (reflection padding), the prediction passes the content filter (more than ``content_fraction`` of
    its pixels above half the target's robust maximum) and is registered
    (:func:`stainfree.register.register`).

    Parameters
    ----------
    tiles : path or list of paths
        EM tiles (2D images).
    target : path
        The large target image (e.g. the immunofluorescence), 2D.
    out : path
        Output folder: ``<tile>.json`` (transform), ``<tile>.ome.tif`` (target, EM and prediction in the
        target frame; the affine in the OME description), ``<tile>_overlay.png``, and ``registration.csv``.
    bundle : path, optional
        EM -> target model bundle, trained at the target's pixel size (needed unless ``predict`` is False).
    predict : bool
        False registers the tiles as they are (same modality as the target).
    tile_pixel_um, target_pixel_um : float, optional
        Pixel sizes when the files do not carry them (both unknown: the same).
    truth : path, optional
        JSON of the known transforms, ``{tile file name: {"matrix": 3 x 3}}`` (tile pixels -> target pixels);
        adds ``error_px`` to the table.
    max_rotation_deg : float
        The template match tries rotations up to this, in 5-degree steps.
    content_fraction : float
        Content filter threshold.
    smooth : float
        Gaussian sigma (target pixels) applied to prediction and target before registering (for predictions
        that match the target only coarsely).
    refine : {"flow", "ncc"}
        ``"flow"``: optical flow + RANSAC similarity after the template match (the paper's method, for
        targets with structure everywhere); ``"ncc"``: the similarity that maximizes the correlation, every
        candidate match refined and an ambiguous best refused
        (for sparse targets, e.g. a few labelled nuclei).
    device : str
        Prediction device.
    progress : bool
        Print one line per tile.

    Returns
    -------
    dict
        ``{"table": registration.csv, "out": folder}``.
    """
    import pandas as pd

    from stainfree.errors import InputError
    from stainfree.io.writers import write_json, write_ome_tiff, write_png, write_table
    from stainfree.register import inverse, warp_into
    from stainfree.register.match import zscore
    from stainfree.register.transform import mean_displacement_error

    paths = [Path(tiles)] if isinstance(tiles, (str, Path)) else [Path(t) for t in tiles]
    if not paths:
        raise InputError("tiles", "no tile given")
    if predict and bundle is None:
        raise InputError(
            "bundle", "a model bundle is needed to predict the target modality (or --no-predict)"
        )
    out = Path(out)
    tgt, t_meta = _read_2d(Path(target))
    tgt_z = zscore(tgt)
    tgt_px = _pixel_um(t_meta, target_pixel_um)
    known = _truth(truth)
    loaded = None
    if predict:
        from stainfree.models.bundle import load_bundle

        loaded = load_bundle(bundle)  # type: ignore[arg-type]
    step = 5.0
    n_angles = int(np.floor(max(max_rotation_deg, 0.0) / step))
    angles = tuple(step * k for k in range(-n_angles, n_angles + 1))
    prepared = []
    for path in paths:
        tile, meta = _read_2d(path)
        px = _pixel_um(meta, tile_pixel_um)
        factor = px / tgt_px if px and tgt_px else 1.0
        if min(tile.shape) * factor < 16 or any(
            n * factor > m for n, m in zip(tile.shape, tgt.shape, strict=True)
        ):
            raise InputError(
                path, f"tile of {tile.shape} pixels (x {factor:.3g}) does not fit in the target {tgt.shape}"
            )
        prepared.append(
            (path, tile, factor, *prepare_tile(tile, bundle=loaded, factor=factor, device=device))
        )
    reference = content_reference([p[3] for p in prepared])
    rows: list[dict[str, Any]] = []
    for path, tile, factor, pred, pred_to_tile in prepared:
        res = register_tile(
            pred,
            pred_to_tile,
            tgt_z,
            reference=reference,
            angles=angles,
            content_fraction=content_fraction,
            smooth=smooth,
            refine=refine,
        )
        row = {"tile": path.name, "factor": factor, **res.row}
        if res.registration is None or res.tile_to_target is None:
            rows.append(row)
            if progress:
                print(f"{path.name}: skipped (content {row['content_fraction']:.4f})")
            continue
        reg, tile_to_target, pred = res.registration, res.tile_to_target, res.prediction
        if path.name in known:
            from skimage.transform import SimilarityTransform

            true_t = SimilarityTransform(matrix=known[path.name])
            row["error_px"] = round(mean_displacement_error(true_t, tile_to_target, tile.shape), 4)
        record = {
            "tile": str(path),
            "target": str(target),
            "tile_to_target": tile_to_target.params,
            "target_to_tile": np.linalg.inv(tile_to_target.params),
            "tile_pixel_um": px,
            "target_pixel_um": tgt_px,
            "predicted": loaded is not None,
            **row,
        }
        stem = path.name.split(".")[0]
        write_json(out / f"{stem}.json", record)
        target_to_tile = inverse(tile_to_target)
        em_in_target = warp_into(tile, target_to_tile, tgt.shape, antialias=True)
        pred_in_target = warp_into(pred, inverse(reg.transform), tgt.shape, antialias=False)
        affine = {"stainfree_registration": {"em_channel_to_tile": target_to_tile.params.tolist()}}
        write_ome_tiff(
            out / f"{stem}.ome.tif",
            np.stack([tgt, np.nan_to_num(em_in_target), np.nan_to_num(pred_in_target)]).astype(np.float32),
            "CYX",
            voxel_size_um=(None, tgt_px, tgt_px),
            channel_names=["target", "em_registered", "prediction_registered"],
            description=json.dumps({**affine, "tile_to_target": tile_to_target.params.tolist()}),
        )
        write_png(out / f"{stem}_overlay.png", _overlay(tgt, em_in_target, tile_to_target, tile.shape))
        rows.append(row)
        if progress:
            err = f", error {row['error_px']:.2f} px" if "error_px" in row else ""
            state = "converged" if reg.converged else f"not converged: {reg.reason}"
            print(f"{path.name}: {state} (score {reg.score:.2f}{err})")
    df: pd.DataFrame = pd.DataFrame(rows)
    table = write_table(out / "registration.csv", df)
    return {"table": table, "out": out}


def simulate_clem(
    out: str | Path,
    *,
    n_tiles: int = 4,
    seed: int = 0,
    size_um: float = 51.2,
    tile_um: float = 15.0,
    em_pixel_um: float = 0.05,
    max_rotation_deg: float = 10.0,
    max_scale_change: float = 0.05,
    training_fields: int = 0,
) -> dict[str, Path]:
    """Write a simulated conjugate EM / MBP-IF case with known transforms.

    Parameters
    ----------
    out : path
        Folder: ``if.ome.tif`` (target, 0.1 um), ``em/tile_NNN.ome.tif`` (EM tiles),
        ``if_tiles/tile_NNN.ome.tif`` (IF tiles at the IF pixel size placed by the same kind of transform, for
        ``--no-predict``), ``truth.json`` and ``if_tiles/truth.json``; with ``training_fields``,
        ``train/em_NN.ome.tif`` and ``train/if_NN.ome.tif`` (registered pairs on the IF grid, from other
        fields), ``train/manifest.csv`` and ``train/job.yaml`` (``stainfree train`` trains the EM -> IF
        bundle ``train/run/em2if.stainfree`` from it).
    n_tiles, seed, size_um, tile_um, em_pixel_um, max_rotation_deg, max_scale_change
        The case: tile count, seed, field side, tile side, EM pixel size, placement ranges.
    training_fields : int
        Separate simulated fields written as training pairs.

    Returns
    -------
    dict
        Paths of ``target``, ``tiles`` (folder), ``truth``, ``if_tiles`` (folder), ``if_truth`` and, with
        training fields, ``train`` (manifest) and ``job``.
    """
    from stainfree.io.writers import write_json, write_ome_tiff
    from stainfree.register import about_center, compose, similarity, warp_into
    from stainfree.simulate.conjugate import em_tile, random_placement, simulate_conjugate, training_pair

    out = Path(out)
    field = simulate_conjugate(seed, size_um=size_um)
    ifp = field.if_pixel_um
    target = write_ome_tiff(out / "if.ome.tif", field.fluorescence, "YX", voxel_size_um=(None, ifp, ifp))
    rng = np.random.default_rng([seed, 1])
    shape = (round(tile_um / em_pixel_um),) * 2
    truth: dict[str, Any] = {}
    if_truth: dict[str, Any] = {}
    for i in range(n_tiles):
        pl = random_placement(
            rng,
            field,
            shape=shape,
            em_pixel_um=em_pixel_um,
            max_rotation_deg=max_rotation_deg,
            max_scale_change=max_scale_change,
        )
        tile, t = em_tile(
            field,
            (pl["cy"], pl["cx"]),
            shape=shape,
            em_pixel_um=em_pixel_um,
            rotation_deg=pl["rotation_deg"],
            scale_change=pl["scale_change"],
        )
        name = f"tile_{i:03d}.ome.tif"
        write_ome_tiff(out / "em" / name, tile, "YX", voxel_size_um=(None, em_pixel_um, em_pixel_um))
        truth[name] = {"matrix": t.params, **pl}
        # the same-modality case: an IF tile at the IF pixel size, rotated and scaled alike
        n = round(tile_um / ifp)
        ti = about_center(
            (n, n), 1.0 + pl["scale_change"], pl["rotation_deg"], (pl["cx"] / ifp - 0.5, pl["cy"] / ifp - 0.5)
        )
        tile_if = warp_into(field.fluorescence, compose(ti, similarity()), (n, n), cval=0.0)
        write_ome_tiff(out / "if_tiles" / name, tile_if, "YX", voxel_size_um=(None, ifp, ifp))
        if_truth[name] = {"matrix": ti.params, **pl}
    paths = {
        "target": target,
        "tiles": out / "em",
        "truth": write_json(out / "truth.json", truth),
        "if_tiles": out / "if_tiles",
        "if_truth": write_json(out / "if_tiles" / "truth.json", if_truth),
    }
    if training_fields:
        import pandas as pd

        from stainfree.io.writers import write_table

        rows = []
        for k in range(training_fields):
            em, fl = training_pair(
                simulate_conjugate(seed + 1000 + k, size_um=size_um), em_pixel_um=em_pixel_um
            )
            for kind, a in (("em", em), ("if", fl)):
                write_ome_tiff(
                    out / "train" / f"{kind}_{k:02d}.ome.tif", a, "YX", voxel_size_um=(None, ifp, ifp)
                )
            rows.append({"signal": f"em_{k:02d}.ome.tif", "target": f"if_{k:02d}.ome.tif"})
        paths["train"] = write_table(out / "train" / "manifest.csv", pd.DataFrame(rows))
        from stainfree.config import DataConfig, TrainConfig, TrainingJob, save_yaml

        job = TrainingJob(
            name="em2if",
            output_dir=(out / "train" / "run").resolve(),
            data=DataConfig(manifest=paths["train"].resolve(), input_mode="2d"),
            train=TrainConfig(max_time="5m"),
        )
        paths["job"] = save_yaml(job, out / "train" / "job.yaml")
    return paths
