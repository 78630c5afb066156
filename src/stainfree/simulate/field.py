"""One simulated field: geometry -> motion -> label/instance maps -> bright-field, fluorescence, Nile Red.

Randomness: field ``i`` of seed ``s`` draws from independent streams ``SeedSequence(s, spawn_key=(i, k))``
for geometry (k=0), motion (1), Nile Red spectra (2), the noise of frame t and channel c (3, t, c) and
time-lapse events (4, only when ``events`` is set; :mod:`stainfree.simulate.events`) and mitotic phases
(5, only when ``phases`` is set; :mod:`stainfree.simulate.mitosis`), so the same
configuration gives the same arrays bit for bit, and changing the noise level leaves the geometry alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from stainfree.config import SimulationConfig
from stainfree.simulate.events import dump_config, plan_events
from stainfree.simulate.geometry import PRIORITY, Scene, build_scene, rasterize
from stainfree.simulate.motion import assign_motion, trajectories
from stainfree.simulate.optics import (
    EMISSION_UM,
    MICROSCOPES,
    blur,
    brightfield,
    c_max_from_moments,
    camera,
    moments,
    psf_sigma_um,
    shift_subpixel,
)
from stainfree.simulate.spectra import draw_spectra, nilered_density, nilered_table
from stainfree.types import COMPARTMENTS, compartment_id

#: Which compartments a fluorescence target labels, with relative stain density.
TARGET_COMPARTMENTS: dict[str, dict[str, float]] = {
    "dna": {"nucleus": 1.0, "nuclear_membrane": 1.0},  # times the chromatin texture
    "membrane": {"plasma_membrane": 1.0, "filopodia": 1.0},
    "mitochondria": {"mitochondria": 1.0},
    "er": {"er": 1.0, "nuclear_membrane": 0.8, "nuclear_reticulum": 0.6},
}

#: Refractive index per compartment (the nucleus adds 0.025 x chromatin density).
REFRACTIVE_INDEX: dict[str, float] = {
    "extracellular": 1.337,
    "cytosol": 1.360,
    "nucleus": 1.345,
    "er": 1.375,
    "nuclear_membrane": 1.390,
    "nuclear_reticulum": 1.370,
    "golgi": 1.390,
    "lipid_droplet": 1.470,
    "mitochondria": 1.400,
    "peroxisome": 1.385,
    "early_endosome": 1.380,
    "late_endosome": 1.390,
    "lysosome": 1.400,
    "plasma_membrane": 1.420,
    "filopodia": 1.400,
}

#: Absorbance per voxel (amplitude contrast; the nucleus adds 0.002 x chromatin density).
ABSORBANCE: dict[str, float] = {"lipid_droplet": 0.004, "mitochondria": 0.001, "plasma_membrane": 0.001}


@dataclass
class SimulatedField:
    """Arrays and metadata of one field. Time-lapses (n_frames > 1) carry a leading T axis.

    Attributes
    ----------
    brightfield : (T)ZYX uint16 camera counts; ``brightfield_clean`` float32 expected counts.
    fluorescence : (T)CZYX uint16, one channel per target; ``fluorescence_clean`` float32 expected counts.
    nilered : (T)CZYX uint16 channels "yellow", "red" (+ "gfp"); ``nilered_clean`` float32.
    labels : (T)ZYX uint8 compartment id 1..15.
    instances : (T)CZYX uint32, 15 channels in COMPARTMENTS order, 0 where the voxel is another compartment.
    cells : ZYX uint16 cell id (0 = outside cells); cells do not move.
    components : extra noise-free parts, e.g. ``"gfp_own"`` (gfp photons without bleed-through or background).
    metadata : everything written to field.json.
    """

    index: int
    brightfield: np.ndarray
    brightfield_clean: np.ndarray
    fluorescence: np.ndarray
    fluorescence_clean: np.ndarray
    nilered: np.ndarray
    nilered_clean: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    cells: np.ndarray
    target_names: tuple[str, ...]
    nilered_names: tuple[str, ...]
    voxel_size_um: tuple[float, float, float]
    metadata: dict = field(default_factory=dict)
    components: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of time points."""
        return int(self.metadata.get("n_frames", 1))

    def axes(self, name: str) -> str:
        """Axis letters of an array attribute (e.g. ``"CZYX"`` or ``"TCZYX"``)."""
        t = "T" if self.n_frames > 1 else ""
        if name == "cells":
            return "ZYX"
        if name in ("brightfield", "brightfield_clean", "labels"):
            return t + "ZYX"
        return t + "CZYX"


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def resolve_microscope(config: SimulationConfig) -> dict:
    """The microscope profile with the config's overrides (voxel size, read noise) applied."""
    prof = dict(MICROSCOPES[config.microscope])
    prof["name"] = config.microscope
    if config.voxel_size_um is not None:
        prof["voxel_size_um"] = tuple(config.voxel_size_um)
    if config.read_noise is not None:
        prof["read_noise"] = config.read_noise
    return prof


def target_density(name: str, labels: np.ndarray, dna: np.ndarray) -> np.ndarray:
    """Stain density (0..~1.5) of a fluorescence target from the label map (and chromatin for "dna")."""
    weights = TARGET_COMPARTMENTS.get(name, {name: 1.0})
    lut = np.zeros(len(COMPARTMENTS) + 1, np.float32)
    for cls, w in weights.items():
        lut[compartment_id(cls)] = w
    dens = lut[labels]
    if name == "dna":
        dens *= dna
    return dens


def _relabel(frames: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Map instance ids to 1..n per compartment over the union of frames; returns (lut, present)."""
    m = max(int(inst.max()) for _, inst in frames) + 1
    present = np.zeros((len(COMPARTMENTS) + 1, m), bool)
    for labels, inst in frames:
        key = labels.astype(np.int64).ravel() * m + inst.ravel()
        present |= np.bincount(key, minlength=present.size).reshape(present.shape) > 0
    lut = (np.cumsum(present, axis=1) * present).astype(np.uint32)
    return lut, present


def _objects(
    labels: np.ndarray, inst: np.ndarray, owner: np.ndarray, voxel: np.ndarray, t: int, spectra: dict
) -> list[dict]:
    """Object list computed from the final maps: class, instance, cell, volume, centroid, Nile Red values."""
    m = int(inst.max()) + 1
    key = labels.astype(np.int64).ravel() * m + inst.ravel()
    size = (len(COMPARTMENTS) + 1) * m
    counts = np.bincount(key, minlength=size)
    nz = np.flatnonzero(counts)
    grids: tuple[np.ndarray, ...] = np.indices(labels.shape, sparse=True)
    zz, yy, xx = grids
    cents = []
    for ax, grid in enumerate((zz, yy, xx)):
        w = np.broadcast_to(grid, labels.shape).ravel()
        cents.append(np.bincount(key, weights=w, minlength=size)[nz] / counts[nz] * voxel[ax])
    out = []
    vv = float(np.prod(voxel))
    for j, k in enumerate(nz):
        lab, iid = divmod(int(k), m)
        cls = COMPARTMENTS[lab - 1]
        bright, ratio = spectra[cls]
        out.append(
            {
                "t": t,
                "class": cls,
                "label": lab,
                "instance": iid,
                "cell": int(owner[lab, iid]),
                "volume_voxels": int(counts[k]),
                "volume_um3": round(counts[k] * vv, 5),
                "centroid_zyx_um": [round(float(c[j]), 4) for c in cents],
                "nilered_brightness": round(float(bright[iid]), 5),
                "nilered_ratio": round(float(ratio[iid]), 5),
            }
        )
    return out


def _owner_lut(scene: Scene, lut: np.ndarray) -> np.ndarray:
    """Cell id per (label, new instance id)."""
    owner = np.zeros((len(COMPARTMENTS) + 1, int(lut.max()) + 1), np.int64)
    pairs = dict(scene.owners)
    for ob in scene.objects:
        pairs[(ob.cls, ob.instance)] = ob.cell
    for (cls, old), cell in pairs.items():
        lab = compartment_id(cls)
        if old < lut.shape[1] and lut[lab, old] > 0:
            owner[lab, lut[lab, old]] = cell
    return owner


def simulate_field(config: SimulationConfig, index: int, scene: Scene | None = None) -> SimulatedField:
    """Simulate field ``index`` of a configuration: masks, bright-field, fluorescence and Nile Red.

    Parameters
    ----------
    config : SimulationConfig
    index : field number (selects the random streams).
    scene : optional pre-built geometry (tests); drawn from the config when None.

    Returns
    -------
    SimulatedField
    """
    prof = resolve_microscope(config)
    vox = np.asarray(prof["voxel_size_um"], float)
    shape = tuple(config.shape)
    rng_geom = _rng(config.seed, index, 0)
    if scene is None:
        lo, hi = config.cells_per_field
        n_cells = int(rng_geom.integers(lo, hi + 1))
        scene = build_scene(rng_geom, shape, vox, n_cells, config.cell_shape)
    mitosis = None
    if config.phases:  # mitotic phases: their own stream 5; without phases nothing here runs
        from stainfree.simulate.mitosis import apply_phases

        mitosis = apply_phases(scene, _rng(config.seed, index, 5), config.phases)
    n_t = config.n_frames
    rng_motion = _rng(config.seed, index, 1)
    assign_motion(
        scene, rng_motion, config.diffusion_um2_s, config.directed_speed_um_s, config.directed_fraction
    )
    traj = trajectories(scene, rng_motion, n_t, config.frame_interval_s)
    plan = None
    if config.events is not None and n_t > 1:  # own stream: fields without events are unchanged
        plan = plan_events(scene, traj, _rng(config.seed, index, 4), config.events, n_t)
        frames = [rasterize(*plan.frame(t)) for t in range(n_t)]
        scene = plan.scene
    else:
        frames = [rasterize(scene, traj[t] if n_t > 1 else None) for t in range(n_t)]
    lut, _ = _relabel(frames)
    frames = [(lab, lut[lab, inst]) for lab, inst in frames]
    owner = _owner_lut(scene, lut)
    n_inst = {cls: int(lut[c + 1].max()) for c, cls in enumerate(COMPARTMENTS)}
    ratio_scale = prof["nilered_ratio_scale"] * config.nilered_ratio_factor
    spectra = draw_spectra(_rng(config.seed, index, 2), n_inst, ratio_scale, config.nilered_model)
    table = nilered_table(config.nilered_model)

    na, n_imm, conf, haze = prof["na"], prof["immersion_index"], prof["confocal"], prof["haze_fraction"]
    read, offset, bg = prof["read_noise"], config.offset, config.background_photons
    sig = {
        name: psf_sigma_um(EMISSION_UM.get(name, 0.52), na, n_imm, conf, prof.get("lateral_gain"))
        for name in (*config.targets, "yellow", "red", "gfp")
    }
    shift_um = np.asarray(prof["chromatic_shift_um"], float)
    shift_vox = shift_um / vox
    ri_lut = np.array([0.0] + [REFRACTIVE_INDEX[c] for c in COMPARTMENTS], np.float32)
    ab_lut = np.array([0.0] + [ABSORBANCE.get(c, 0.0) for c in COMPARTMENTS], np.float32)
    nuc_mask_ids = (compartment_id("nucleus"), compartment_id("nuclear_membrane"))
    nr_names = ("yellow", "red") + (("gfp",) if config.gfp_structure else ())

    out: dict[str, list[np.ndarray]] = {k: [] for k in ("bf", "bfc", "fl", "flc", "nr", "nrc", "lab", "inst")}
    gfp_own: list[np.ndarray] = []
    objects: list[dict] = []
    sums: dict[str, np.ndarray] = {}
    ncls = len(COMPARTMENTS)

    def noisy(expected: np.ndarray, t: int, slot: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        counts, clean = camera(expected, _rng(config.seed, index, 3, t, slot), read, offset)
        sums[name] = sums.get(name, 0.0) + moments(counts, clean)
        return counts, clean

    def bf_task(labels: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        nuc = np.isin(labels, nuc_mask_ids)
        ri = ri_lut[labels] + np.where(nuc, 0.04 * scene.dna, 0.0).astype(np.float32)
        ab = ab_lut[labels] + np.where(nuc, 0.004 * scene.dna, 0.0).astype(np.float32)
        if scene.chromosomes is not None:  # mitotic chromosomes outside a nucleus
            ri += (0.04 * scene.chromosomes).astype(np.float32)
            ab += (0.004 * scene.chromosomes).astype(np.float32)
        n_med = REFRACTIVE_INDEX["extracellular"]
        inten = brightfield(
            ri,
            vox,
            prof["brightfield_wavelength_um"],
            na,
            prof["condenser_na"],
            n_med,
            ab,
            prof["brightfield_focus_offset_um"],
        )
        return noisy(config.brightfield_photons * inten, t, 0, "brightfield")

    def fl_task(labels: np.ndarray, t: int, i: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        photons = config.photons.get(name, config.default_photons)
        dens = target_density(name, labels, scene.dna)
        if name == "dna" and scene.chromosomes is not None:
            dens = dens + scene.chromosomes
        expected = bg + photons * blur(dens, sig[name], vox, haze)
        return noisy(expected, t, 1 + i, name)

    def nr_task(labels: np.ndarray, inst: np.ndarray, t: int) -> list[tuple[np.ndarray, np.ndarray]]:
        yd, rd = nilered_density(labels, inst, spectra)
        base = 1 + len(config.targets)
        ysig = config.nilered_photons * blur(yd, sig["yellow"], vox, haze)
        res = [noisy(bg + ysig, t, base, "yellow")]
        if config.gfp_structure:
            dens = target_density(config.gfp_structure, labels, scene.dna)
            own = config.gfp_photons * blur(dens, sig["gfp"], vox, haze)
            gfp_own.append(own.astype(np.float32))
            res.append(noisy(bg + own + config.bleed_through * ysig, t, base + 2, "gfp"))
        return res

    def red_task(labels: np.ndarray, inst: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        _, rd = nilered_density(labels, inst, spectra)
        rsig = config.nilered_photons * shift_subpixel(blur(rd, sig["red"], vox, haze), shift_vox)
        return noisy(bg + rsig, t, 2 + len(config.targets), "red")

    with ThreadPoolExecutor(max_workers=2) as pool:
        for t, (labels, inst) in enumerate(frames):
            f_bf = pool.submit(bf_task, labels, t)
            f_nr = pool.submit(nr_task, labels, inst, t)
            f_red = pool.submit(red_task, labels, inst, t)
            f_fl = [pool.submit(fl_task, labels, t, i, name) for i, name in enumerate(config.targets)]
            instances = np.zeros((ncls, labels.size), np.uint32)
            instances[labels.ravel().astype(np.intp) - 1, np.arange(labels.size)] = inst.ravel()
            out["inst"].append(instances.reshape((ncls, *labels.shape)))
            out["lab"].append(labels)
            objects.extend(_objects(labels, inst, owner, vox, t, spectra))
            bf, bfc = f_bf.result()
            out["bf"].append(bf)
            out["bfc"].append(bfc)
            fl = [f.result() for f in f_fl]
            out["fl"].append(np.stack([a for a, _ in fl]))
            out["flc"].append(np.stack([b for _, b in fl]))
            nr_res = f_nr.result()
            nr = [nr_res[0], f_red.result(), *nr_res[1:]]
            out["nr"].append(np.stack([a for a, _ in nr]))
            out["nrc"].append(np.stack([b for _, b in nr]))

    def pack(key: str) -> np.ndarray:
        arrs = out[key]
        return np.stack(arrs) if n_t > 1 else arrs[0]

    fl_all, flc_all = pack("fl"), pack("flc")
    nr_all, nrc_all = pack("nr"), pack("nrc")
    bf_all, bfc_all = pack("bf"), pack("bfc")
    targets_meta = {}
    for i, name in enumerate(config.targets):
        cm = c_max_from_moments(sums[name])
        targets_meta[name] = {
            "channel": i,
            "compartments": TARGET_COMPARTMENTS.get(name, {name: 1.0}),
            "photons": config.photons.get(name, config.default_photons),
            "emission_um": EMISSION_UM.get(name, 0.52),
            "psf_sigma_um": [round(float(v), 5) for v in sig[name]],
            "c_max": cm,
            "snr": cm**2 / (1 - cm**2) if cm < 1 else float("inf"),
        }
    nr_cmax = {name: c_max_from_moments(sums[name]) for name in nr_names}
    ratio_dists = {
        cls: {
            "brightness_median": table[cls][0],
            "brightness_log_sd": table[cls][1],
            "ratio_median": table[cls][2] * ratio_scale,
            "ratio_log_sd": table[cls][3],
        }
        for cls in COMPARTMENTS
    }
    metadata = {
        "field": index,
        "seed": config.seed,
        "random_streams": "SeedSequence(seed, spawn_key=(field, k)); k: 0 geometry, 1 motion, 2 spectra, "
        "(3, t, channel) noise",
        "parameters": dump_config(config),
        "shape_zyx": list(shape),
        "n_frames": n_t,
        "frame_interval_s": config.frame_interval_s,
        "voxel_size_um": [float(v) for v in vox],
        "axes": {
            "brightfield": ("T" if n_t > 1 else "") + "ZYX",
            "fluorescence": ("T" if n_t > 1 else "") + "CZYX",
            "nilered": ("T" if n_t > 1 else "") + "CZYX",
            "labels": ("T" if n_t > 1 else "") + "ZYX",
            "instances": ("T" if n_t > 1 else "") + "CZYX",
            "cells": "ZYX",
        },
        "microscope": {k: (list(v) if isinstance(v, tuple) else v) for k, v in prof.items()},
        "compartments": list(COMPARTMENTS),
        "label_priority": list(PRIORITY),
        "label_priority_note": "painted lowest first, a later compartment overwrites an earlier one; "
        "organelles clipped to their cell's cytoplasm, nuclear reticulum to its nucleus, filopodia to "
        "extracellular space",
        "noise_model": {
            "type": "poisson shot noise + gaussian read noise, gain 1 count/electron, 16-bit",
            "read_noise_e": read,
            "offset_counts": offset,
            "background_photons": bg,
            "clean": "expected counts (photons + offset)",
            "c_max": "sqrt(SNR/(1+SNR)), SNR = var(clean) / var(noisy - clean) of the written realisation",
        },
        "brightfield": {
            "model": "weak-object partially coherent defocus transfer (3D FFT), camera noise",
            "wavelength_um": prof["brightfield_wavelength_um"],
            "na": na,
            "condenser_na": prof["condenser_na"],
            "focus_offset_um": prof["brightfield_focus_offset_um"],
            "photons": config.brightfield_photons,
            "refractive_index": REFRACTIVE_INDEX,
            "refractive_index_nucleus_chromatin": 0.04,
            "absorbance_nucleus_chromatin": 0.004,
            "absorbance": ABSORBANCE,
            "c_max": c_max_from_moments(sums["brightfield"]),
        },
        "fluorescence": {"channels": list(config.targets), "targets": targets_meta},
        "nilered": {
            "channels": list(nr_names),
            "photons": config.nilered_photons,
            "model": "per object: yellow = b / (1 + R), red = b R / (1 + R), times photons, PSF, shift (red)",
            "psf_sigma_um": {c: [round(float(v), 5) for v in sig[c]] for c in ("yellow", "red", "gfp")},
            "ratio_scale": ratio_scale,
            "constants": config.nilered_model,
            "chromatic_shift_um": [float(v) for v in shift_um],
            "chromatic_shift_voxels": [round(float(v), 5) for v in shift_vox],
            "chromatic_shift_note": "red channel content is displaced by +shift relative to yellow",
            "classes": ratio_dists,
            "c_max": nr_cmax,
            "gfp": None
            if not config.gfp_structure
            else {
                "structure": config.gfp_structure,
                "photons": config.gfp_photons,
                "bleed_through": config.bleed_through,
                "model": "gfp = background + own + bleed_through * (yellow - background)",
            },
        },
        "motion": {
            "diffusion_um2_s": config.diffusion_um2_s,
            "directed_speed_um_s": config.directed_speed_um_s,
            "directed_fraction": config.directed_fraction,
        },
        "cells": scene.cells_info,
        "n_cells": len(scene.cells_info),
        "objects": objects,
    }
    if mitosis is not None:
        metadata["mitosis"] = mitosis
    if plan is not None:
        metadata["events"] = plan.table(lut)
        metadata["random_streams"] = f"{metadata['random_streams']}, 4 time-lapse events"
    components = {}
    if gfp_own:
        components["gfp_own"] = np.stack(gfp_own) if n_t > 1 else gfp_own[0]
    return SimulatedField(
        index=index,
        brightfield=bf_all,
        brightfield_clean=bfc_all,
        fluorescence=fl_all,
        fluorescence_clean=flc_all,
        nilered=nr_all,
        nilered_clean=nrc_all,
        labels=pack("lab"),
        instances=pack("inst"),
        cells=scene.cells,
        target_names=tuple(config.targets),
        nilered_names=nr_names,
        voxel_size_um=tuple(float(v) for v in vox),  # type: ignore[arg-type]
        metadata=metadata,
        components=components,
    )
