"""The versioned organelle catalog (package data) and its loader.

``organelles_v1.yaml`` lists 10 networks that together segment the 15 compartments of
:data:`stainfree.types.COMPARTMENTS` from the two emission channels of Nile Red.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from stainfree.config import CatalogNetwork, OrganelleCatalog, validate
from stainfree.errors import ConfigError
from stainfree.types import COMPARTMENTS, compartment_id

__all__ = [
    "DEFAULT_CATALOG",
    "available_catalogs",
    "check_catalog",
    "load_catalog",
    "network_target",
]

#: Name of the catalog used when none is given.
DEFAULT_CATALOG = "organelles_v1"


def available_catalogs() -> list[str]:
    """Names of the catalogs shipped with stainfree (e.g. ``["organelles_v1"]``)."""
    root = resources.files(__package__)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def check_catalog(catalog: OrganelleCatalog, source: str = "catalog") -> OrganelleCatalog:
    """Check that a catalog maps each of the 15 compartments exactly once and is self-consistent.

    Raises
    ------
    ConfigError
        Listing every problem found.
    """
    problems = []
    seen: dict[str, str] = {}
    for net in catalog.networks:
        if net.task == "binary" and len(net.classes) != 1:
            problems.append(f"network {net.name}: a binary network has exactly one class")
        if net.task == "binary" and net.class_weights is not None:
            problems.append(f"network {net.name}: binary networks take pos_weight, not class_weights")
        if net.task == "multiclass" and net.pos_weight is not None:
            problems.append(f"network {net.name}: multi-class networks take class_weights, not pos_weight")
        if net.class_weights is not None and len(net.class_weights) != net.n_outputs:
            problems.append(
                f"network {net.name}: {len(net.class_weights)} class weights for {net.n_outputs} outputs"
            )
        if len(net.patch_shape) != net.spatial_dims:
            problems.append(f"network {net.name}: patch_shape {net.patch_shape} is not {net.spatial_dims}D")
        for c in net.classes:
            for lab in [c.name, *(c.from_labels or [])]:
                if lab not in COMPARTMENTS:
                    problems.append(f"network {net.name}: unknown compartment {lab!r}")
            if c.name in seen:
                problems.append(f"compartment {c.name} is segmented by both {seen[c.name]} and {net.name}")
            seen[c.name] = net.name
    missing = [c for c in COMPARTMENTS if c not in seen]
    if missing:
        problems.append(f"no network segments {', '.join(missing)}")
    if sorted(catalog.label_priority) != sorted(COMPARTMENTS):
        problems.append("label_priority must list each of the 15 compartments exactly once")
    names = [n.name for n in catalog.networks]
    if len(set(names)) != len(names):
        problems.append("network names must be unique")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return catalog


def load_catalog(name_or_path: str | os.PathLike = DEFAULT_CATALOG) -> OrganelleCatalog:
    """Load and check an organelle catalog by packaged name (``"organelles_v1"``) or from a YAML file.

    Raises
    ------
    ConfigError
        Unknown name, unreadable file, or a catalog that does not map the 15 compartments once each.
    """
    import yaml

    text_source = str(name_or_path)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    else:
        res = resources.files(__package__) / f"{text_source}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"{text_source}: unknown catalog; packaged catalogs: {', '.join(available_catalogs())}"
            )
        text = res.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{text_source}: not valid YAML ({exc})") from None
    return check_catalog(validate(OrganelleCatalog, data, source=text_source), source=text_source)


def network_target(net: CatalogNetwork, labels: np.ndarray) -> np.ndarray:
    """The training target of one catalog network from a simulator label map.

    Parameters
    ----------
    net : CatalogNetwork
        The network.
    labels : ndarray of int
        Semantic label map (value = compartment id 1..15, 0 = none), any shape.

    Returns
    -------
    ndarray of uint8
        Binary net: 0/1 mask. Multi-class net: class index per voxel (0 = background when the net has one,
        else
        the class order of ``net.classes``; voxels of no class fall to class 0).
    """
    lab = np.asarray(labels)
    out = np.zeros(lab.shape, dtype=np.uint8)
    offset = 1 if (net.task == "binary" or net.background_class) else 0
    for i, c in enumerate(net.classes):
        ids = [compartment_id(n) for n in (c.from_labels or [c.name])]
        out[np.isin(lab, ids)] = i + offset
    return out


def compartment_truth(catalog: OrganelleCatalog, compartment: str, labels: np.ndarray) -> np.ndarray:
    """Truth mask of one compartment from a simulator label map, as the catalog's network learns it.

    The segmented masks follow the catalog's definitions (the VOLUME net's cytosol is the whole cytoplasm
    with the organelles in it, its nucleus includes the nuclear reticulum), so they are scored against the
    same definitions.

    Parameters
    ----------
    catalog : OrganelleCatalog
        The catalog.
    compartment : str
        One of the 15 compartments.
    labels : ndarray of int
        Semantic label map (value = compartment id 1..15).

    Returns
    -------
    ndarray of bool
        Same shape as ``labels``.
    """
    net = catalog.network_of(compartment)
    cls = next(c for c in net.classes if c.name == compartment)
    return np.isin(np.asarray(labels), [compartment_id(n) for n in (cls.from_labels or [cls.name])])
