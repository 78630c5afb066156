"""The digital cell: what the simulator draws (fields, microscope, stains, noise, motion)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from stainfree.config.base import CONFIG_VERSION, StrictModel

#: Fluorescence targets that are not one compartment; any name of ``stainfree.types.COMPARTMENTS`` works too.
SIMULATION_TARGETS: tuple[str, ...] = ("dna", "membrane", "mitochondria", "er")


class SimulationConfig(StrictModel):
    """The digital cell: how many fields, which microscope, which stains, how much noise, how much motion.

    Sizes are physical (micrometres); the microscope profile sets voxel size, PSF and camera unless set here.
    """

    version: int = Field(CONFIG_VERSION, description="Configuration format version.")
    seed: int = Field(0, ge=0, description="Master seed; the same config and seed give byte-identical files.")
    n_fields: int = Field(4, ge=1, le=10_000, description="Number of fields of view (one folder each).")
    shape: tuple[int, int, int] = Field((32, 256, 256), description="Field size (z, y, x) in voxels.")
    voxel_size_um: tuple[float, float, float] | None = Field(
        None,
        description="Voxel size (z, y, x) in um; None takes the microscope's "
        "(spinning_disk: 0.29, 0.108, 0.108; widefield: 0.3, 0.13, 0.13; sdsim: 0.2, 0.054, 0.054).",
    )
    cells_per_field: tuple[int, int] = Field((1, 3), description="Inclusive range of cells per field.")
    cell_shape: Literal["round", "elongated", "spread", "mixed"] = Field(
        "round", description="Cell morphology; 'mixed' draws one of the three for every cell."
    )
    microscope: Literal["spinning_disk", "widefield", "sdsim"] = Field(
        "spinning_disk",
        description="Microscope profile: objective NA, pixel size, PSF, camera noise, Nile Red ratio scale, "
        "chromatic shift. 'sdsim': super-resolution spinning disk (lateral FWHM ~0.127 um, half the "
        "widefield limit; voxels 0.2 x 0.054 x 0.054 um).",
    )
    targets: list[str] = Field(
        default_factory=lambda: list(SIMULATION_TARGETS),
        description="Fluorescence channels: 'dna', 'membrane', 'mitochondria', 'er' or any compartment name.",
    )
    photons: dict[str, float] = Field(
        default_factory=lambda: {"dna": 120.0, "membrane": 150.0, "mitochondria": 100.0, "er": 80.0},
        description="Expected photons per voxel inside a large labelled structure, per target (others: "
        "default_photons).",
    )
    default_photons: float = Field(80.0, gt=0, description="Photon level of targets missing from 'photons'.")
    background_photons: float = Field(3.0, ge=0, description="Uniform background photons per voxel.")
    read_noise: float | None = Field(
        None, ge=0, description="Camera read noise (electrons rms); None takes the microscope's."
    )
    offset: float = Field(100.0, ge=0, description="Camera offset (counts) added to every voxel.")
    brightfield_photons: float = Field(
        2000.0, gt=0, description="Photons per voxel of the bright-field illumination."
    )
    nilered_photons: float = Field(
        300.0, gt=0, description="Photons (yellow + red) per voxel in a lipid droplet, the brightest class."
    )
    nilered_ratio_factor: float = Field(
        1.0,
        gt=0,
        description="Factor on every Nile Red ratio R/Y, on top of the microscope's (e.g. 1.3: a field whose "
        "organelles all emit redder, to test whether a network reads the ratio as an absolute fingerprint).",
    )
    nilered_model: Literal["v1", "v2"] = Field(
        "v1",
        description="Version of the Nile Red brightness / ratio constants (stainfree.simulate.spectra): 'v1' "
        "(default, what every benchmark so far used) or 'v2' (mitochondria brighter than the ER, vesicles "
        "and Golgi 1.5x, ER 0.8x: the contrast of live-cell Nile Red images; benchmarks/separability.py).",
    )
    gfp_structure: str | None = Field(
        None, description="Compartment or target shown in an extra 'gfp' Nile Red channel (None: no gfp)."
    )
    gfp_photons: float = Field(100.0, gt=0, description="Photons per voxel of the gfp-labelled structure.")
    bleed_through: float = Field(
        0.05, ge=0, le=1, description="Fraction of the Nile Red yellow signal bleeding into the gfp channel."
    )
    n_frames: int = Field(1, ge=1, le=1000, description="Time points per field (T > 1 makes a time-lapse).")
    frame_interval_s: float = Field(2.0, gt=0, description="Seconds between frames.")
    diffusion_um2_s: float = Field(
        0.01, ge=0, description="Diffusion coefficient of vesicles (um^2/s); mitochondria, Golgi: 5x less."
    )
    directed_speed_um_s: float = Field(
        0.1, ge=0, description="Speed (um/s) of the directed (motor-driven) vesicles."
    )
    directed_fraction: float = Field(
        0.3, ge=0, le=1, description="Fraction of endosomes and lysosomes with directed motion."
    )
    phases: list[Literal["interphase", "prophase", "metaphase", "anaphase", "telophase"]] | None = Field(
        None,
        description="Mitotic phases: each cell draws one of these (uniformly; repeat a name to weight it) "
        "from the field's random stream 5 and is drawn with that phase's changes (simulate/mitosis.py); "
        "the phase is in field.json. None: every cell in interphase (output unchanged).",
    )
    events: tuple[int, int, int] | None = Field(
        None,
        description="Time-lapse events per field: (fissions, fusions, contacts) of mitochondria and "
        "mitochondrion-lipid droplet / lysosome contacts at known frames (needs n_frames >= 6; truth in "
        "field.json and events.csv); None plays none.",
    )
    output_format: Literal["ome-tiff", "ome-zarr"] = Field("ome-tiff", description="Image file format.")
    val_fraction: float = Field(
        0.25, ge=0, lt=1, description="Fraction of fields marked 'val' in the manifest (the last ones)."
    )

    @field_validator("shape")
    @classmethod
    def _shape_large_enough(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if v[0] < 8 or v[1] < 32 or v[2] < 32:
            raise ValueError(f"shape {v} too small: need at least (8, 32, 32)")
        return v

    @field_validator("events")
    @classmethod
    def _events_counts(cls, v: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if v is not None and (min(v) < 0 or max(v) > 100):
            raise ValueError(f"events {v} must be three counts between 0 and 100")
        return v

    @field_validator("cells_per_field")
    @classmethod
    def _cells_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1] <= 12:
            raise ValueError(f"cells_per_field {v} must be a range (lo, hi) with 1 <= lo <= hi <= 12")
        return v

    @field_validator("voxel_size_um")
    @classmethod
    def _positive_voxels(cls, v: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if v is not None and min(v) <= 0:
            raise ValueError(f"voxel_size_um {v} must be positive")
        return v

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, v: list[str]) -> list[str]:
        from stainfree.types import COMPARTMENTS

        bad = [t for t in v if t not in SIMULATION_TARGETS and t not in COMPARTMENTS]
        if bad:
            raise ValueError(f"unknown target(s) {bad}; use {list(SIMULATION_TARGETS)} or a compartment name")
        if len(set(v)) != len(v):
            raise ValueError(f"targets {v} repeat a name")
        return v

    @field_validator("gfp_structure")
    @classmethod
    def _known_gfp(cls, v: str | None) -> str | None:
        from stainfree.types import COMPARTMENTS

        if v is not None and v not in SIMULATION_TARGETS and v not in COMPARTMENTS:
            raise ValueError(f"unknown gfp_structure {v!r}")
        return v
