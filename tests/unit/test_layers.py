"""The layer contract of ARCHITECTURE.md: a module imports only modules of its own layer or of layers below.

Every module under ``src/stainfree`` is parsed with :mod:`ast`; every import in it (module level, inside
functions, under ``TYPE_CHECKING``) is mapped to a layer and compared with the importing module's layer. An
import of a higher layer fails the test, naming file, line and imported module. Third-party packages confined
to one part (Lightning to train/, dask.distributed to execute/, Qt to napari/) are checked too. Run on its own
with ``make lint`` or ``python -m pytest tests/unit/test_layers.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "stainfree"

# Bottom up. A module belongs to the layer of the longest prefix listed here; a module that matches no prefix
# fails the test so that a new module is placed on purpose.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "types, errors",
        [
            "stainfree._version",
            "stainfree.types",
            "stainfree.errors",
            "stainfree.atomic",
            "stainfree.runtime",
            "stainfree.lock",
        ],
    ),
    ("config", ["stainfree.config"]),
    ("io", ["stainfree.io"]),
    (
        "numpy-only",
        [
            "stainfree.catalog",
            "stainfree.data",  # the (empty) package itself; its torch modules are listed below
            "stainfree.data.preprocess",
            "stainfree.data.ratiometric",
            "stainfree.data.align",
            "stainfree.data.patching",
            "stainfree.data.groundtruth",
            "stainfree.evaluate",
            "stainfree.evaluate.metrics",
            "stainfree.quantify",
            "stainfree.simulate",
            "stainfree.register",
        ],
    ),
    (
        "torch",
        [
            "stainfree.data.augment",
            "stainfree.data.dataset",
            "stainfree.models",
            "stainfree.export",
            "stainfree.train",  # the (empty) package itself
            "stainfree.train.losses",
        ],
    ),
    (
        "train, inference, execute, evaluate",
        [
            "stainfree.train.module",
            "stainfree.train.fit",
            "stainfree.train.fit_data",
            "stainfree.train.trainer",
            "stainfree.inference",
            "stainfree.execute",
            "stainfree.evaluate.evaluate",
            "stainfree.evaluate.figures",
        ],
    ),
    ("report", ["stainfree.report"]),
    ("workflows, api", ["stainfree.workflows", "stainfree.api", "stainfree"]),
    ("cli, napari", ["stainfree.cli", "stainfree.napari"]),
]

# Third-party packages that only one part of stainfree may import.
CONFINED = {
    "lightning": "stainfree.train",
    "pytorch_lightning": "stainfree.train",
    "dask.distributed": "stainfree.execute",
    "distributed": "stainfree.execute",
    "qtpy": "stainfree.napari",
    "PyQt5": "stainfree.napari",
    "PyQt6": "stainfree.napari",
    "PySide2": "stainfree.napari",
    "PySide6": "stainfree.napari",
}

# Known upward imports, each with the reason it is still here. Keep this empty where possible.
ALLOWED: dict[tuple[str, str], str] = {}

_RANK = {prefix: rank for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        rank = _RANK.get(".".join(parts[:n]))
        if rank is not None:
            return rank
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of each import in ``path``; ``from a import b`` is ``a.b`` for a module b."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if base.startswith("stainfree") and _is_module(sub) else base))
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [_module_name(p) for p in _modules() if _layer(_module_name(p)) is None]
    assert not missing, f"modules without a layer in tests/unit/test_layers.py: {missing}"


def test_no_upward_imports():
    problems = []
    for path in _modules():
        module = _module_name(path)
        rank = _layer(module)
        if rank is None:
            continue
        for line, imported in _imports(path, module):
            if not (imported == "stainfree" or imported.startswith("stainfree.")):
                continue
            target = _layer(imported)
            if target is None:
                problems.append(
                    f"{path.relative_to(SRC.parent)}:{line}: imports {imported}, which has no layer"
                )
            elif target > rank and (module, imported) not in ALLOWED:
                problems.append(
                    f"{path.relative_to(SRC.parent)}:{line}: {module} ({LAYERS[rank][0]}) imports {imported} "
                    f"({LAYERS[target][0]}), a higher layer"
                )
    assert not problems, "upward imports:\n" + "\n".join(problems)


@pytest.mark.parametrize("third_party", sorted(CONFINED))
def test_confined_dependencies(third_party):
    home = CONFINED[third_party]
    problems = []
    for path in _modules():
        module = _module_name(path)
        if module == home or module.startswith(home + "."):
            continue
        for line, imported in _imports(path, module):
            if imported == third_party or imported.startswith(third_party + "."):
                problems.append(f"{path.relative_to(SRC.parent)}:{line}: imports {imported} (only in {home})")
    assert not problems, "\n".join(problems)


def test_allowances_are_still_needed():
    """An allowance whose import has gone is removed from ALLOWED."""
    seen = set()
    for path in _modules():
        module = _module_name(path)
        seen.update((module, imported) for _, imported in _imports(path, module))
    assert not set(ALLOWED) - seen, f"allowed upward imports no longer present: {set(ALLOWED) - seen}"


def test_the_check_sees_upward_imports(tmp_path):
    """Absolute, relative and function-level imports are found; the layer order is as in ARCHITECTURE.md."""
    module = tmp_path / "mod.py"
    module.write_text(
        "import stainfree.cli\n"
        "from stainfree.inference import predict\n"
        "def f():\n"
        "    from .. import api\n"
        "    from stainfree.config import DataConfig\n"
    )
    found = _imports(module, "stainfree.data.x")
    assert found == [
        (1, "stainfree.cli"),
        (2, "stainfree.inference.predict"),
        (4, "stainfree.api"),
        (5, "stainfree.config"),
    ]
    assert _layer("stainfree.io.readers") < _layer("stainfree.inference.predict")
    assert _layer("stainfree.data.augment") > _layer("stainfree.data.groundtruth")
    assert _layer("stainfree.cli") > _layer("stainfree.api") == _layer("stainfree.workflows.staining")
