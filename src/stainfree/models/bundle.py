"""A trained model on disk: ``<name>.stainfree/`` with ``weights.pt`` (state dict) and ``bundle.yaml``."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml
from torch import nn

from stainfree.errors import InputError

if TYPE_CHECKING:
    from stainfree.config import BundleConfig

WEIGHTS = "weights.pt"
CONFIG = "bundle.yaml"


@dataclass
class Bundle:
    """A loaded model: the network (eval mode), its :class:`~stainfree.config.BundleConfig`, its folder."""

    model: nn.Module
    config: object
    path: Path = field(default_factory=Path)


def save_bundle(path: str | os.PathLike, model: nn.Module, config: object) -> Path:
    """Write a bundle folder atomically (a crash never leaves a half-written bundle).

    Parameters
    ----------
    path : path-like
        The folder, conventionally ``<name>.stainfree``; replaced if it exists.
    model : nn.Module
        The network; its ``state_dict`` is saved (on CPU).
    config : BundleConfig
        Description of the model.

    Returns
    -------
    Path
        The bundle folder.
    """
    import torch

    from stainfree.io.atomic import atomic_path

    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)  # type: ignore[attr-defined]
    with atomic_path(path) as tmp:
        tmp.mkdir(parents=True)
        # serialized in memory, then written by Python: a full disk or a file-size limit is then an OSError
        # with its errno (torch's own writer reports it as an unspecific RuntimeError)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        try:
            (tmp / WEIGHTS).write_bytes(buffer.getvalue())
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        (tmp / CONFIG).write_text(text)
    return path


def read_bundle_config(path: str | os.PathLike) -> BundleConfig:
    """Read and validate ``bundle.yaml`` of a bundle folder or exported package (InputError when missing,
    corrupt or too new)."""
    path = Path(path)
    if is_package(path):
        text, _ = _package_members(path)
        return parse_bundle_config(text, path)
    if not path.is_dir():
        raise InputError(path, "model bundle not found (expected a folder with weights.pt and bundle.yaml)")
    cfg_file = path / CONFIG
    if not cfg_file.is_file():
        raise InputError(path, f"not a model bundle: {CONFIG} missing")
    return parse_bundle_config(cfg_file.read_text(), cfg_file)


def parse_bundle_config(text: str, source: str | os.PathLike) -> BundleConfig:
    """Validate the text of a ``bundle.yaml`` (``source`` names it in errors)."""
    from stainfree.config import CONFIG_VERSION, BundleConfig

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(source, f"corrupt bundle configuration ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(source, "corrupt bundle configuration (not a mapping)")
    version = data.get("version")
    if not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
        raise InputError(
            source,
            f"bundle format version {version!r} is not supported (this stainfree reads 1..{CONFIG_VERSION})",
        )
    from pydantic import ValidationError

    try:
        return BundleConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(source, f"invalid bundle configuration ({problems})") from None


PACKAGE_RDF = ("rdf.yaml", "bioimageio.yaml")


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a bioimage.io package: a ``.zip`` file, or a folder with ``rdf.yaml``."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".zip"
    return path.is_dir() and not (path / CONFIG).is_file() and any((path / n).is_file() for n in PACKAGE_RDF)


def _package_members(path: Path) -> tuple[str, bytes]:
    """``bundle.yaml`` text and weights bytes of a package exported by stainfree."""
    import zipfile

    def read(name: str) -> bytes:
        if path.is_dir():
            return (path / name).read_bytes()
        with zipfile.ZipFile(path) as z:
            return z.read(name)

    try:
        names = [p.name for p in path.iterdir()] if path.is_dir() else zipfile.ZipFile(path).namelist()
        rdf_name = next((n for n in PACKAGE_RDF if n in names), None)
        if rdf_name is None:
            raise InputError(path, "not a bioimage.io package (no rdf.yaml)")
        rdf = yaml.safe_load(read(rdf_name)) or {}
        ours = ((rdf.get("config") or {}).get("stainfree") or {}) if isinstance(rdf, dict) else {}
        if not ours:
            raise InputError(
                path, "a bioimage.io package not exported by stainfree (no config.stainfree): not supported"
            )
        return read(str(ours.get("bundle", CONFIG))).decode(), read(str(ours.get("weights", WEIGHTS)))
    except (zipfile.BadZipFile, KeyError, OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(path, f"corrupt model package ({type(exc).__name__}: {str(exc)[:120]})") from None


def safe_load(
    path: str | os.PathLike | IO[bytes], *, map_location: str = "cpu", name: str | os.PathLike | None = None
) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors that never suggest unsafe loading.

    Raises
    ------
    InputError
        A file holding pickled objects other than tensors and plain containers ("not a plain weights file ...
        will not be loaded"), or a truncated / corrupt file; ``name`` (default ``path``) is named.
    """
    import pickle

    import torch

    source = name if name is not None else path if isinstance(path, (str, os.PathLike)) else "weights"
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # a readable pickle naming code that safe loading refused
            raise InputError(
                source,
                "not a plain weights file: it holds pickled objects other than tensors, which could run "
                "code; it will not be loaded",
            ) from None
        raise InputError(source, "corrupt weights file (not written by torch.save, or truncated)") from None
    except Exception as exc:
        raise InputError(
            source, f"corrupt weights file (truncated or damaged: {type(exc).__name__})"
        ) from None


def load_bundle(path: str | os.PathLike, *, map_location: str = "cpu") -> Bundle:
    """Load a bundle: configuration, network and weights (``torch.load(weights_only=True)``), in eval mode.

    Raises
    ------
    InputError
        Missing folder, missing/corrupt weights or configuration, an unknown format version, or weights that
        do not fit the described network.
    """

    from stainfree.models.registry import build_model

    path = Path(path)
    if is_package(path):
        import io

        text, blob = _package_members(path)
        config = parse_bundle_config(text, path)
        wfile: Path = path
        state = safe_load(io.BytesIO(blob), map_location=map_location, name=path)
    else:
        config = read_bundle_config(path)
        wfile = path / WEIGHTS
        if not wfile.is_file():
            raise InputError(path, f"not a model bundle: {WEIGHTS} missing")
        state = safe_load(wfile, map_location=map_location)
    model = build_model(config.model)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise InputError(
            wfile, f"weights do not fit the network described in {CONFIG} ({str(exc)[:200]})"
        ) from None
    model.eval()
    return Bundle(model=model, config=config, path=path)
