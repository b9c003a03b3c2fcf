"""The package's layers (docs/DESIGN "Layout"), checked on its source: every import, at any depth.

Imports inside functions and under TYPE_CHECKING count too: a layer that may not import another at
run time may not know its types either, or the rule only moves.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import skinscreen

PACKAGE = Path(skinscreen.__file__).parent

LEAVES = ("config", "errors", "flagging", "tasknames", "results", "counts")
"""Modules below every layer: they import nothing of the package."""

SERVING = (
    "db",
    "models",
    "sites",
    "worker",
    "review",
    "ops",
    "dicomnet",
    "ingest",
    "runner",
    "scoredfile",
    *LEAVES,
)
"""Code a worker, the review server, sites, ops or dicomnet runs: no training code (`models.training`)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@cache
def imports() -> dict[str, frozenset[str]]:
    """Every module of the package -> the package's modules it imports (`from a import b`: a.b when b
    is a module, else a)."""
    found: dict[str, frozenset[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    targets.add(child if is_module(child) else base)
        found[name] = frozenset(t for t in targets if t == "skinscreen" or t.startswith("skinscreen."))
    return found


def under(module: str, *layers: str) -> bool:
    """Whether `module` is one of `skinscreen.<layer>` or inside it."""
    return any(
        module == f"skinscreen.{layer}" or module.startswith(f"skinscreen.{layer}.") for layer in layers
    )


def breaches(
    importer: tuple[str, ...], forbidden: tuple[str, ...], *, unless: tuple[str, ...] = ()
) -> list[str]:
    """ "a imports b" for each module a in `importer` (but not in `unless`) importing b in `forbidden`."""
    return sorted(
        f"{module} imports {target}"
        for module, targets in imports().items()
        if under(module, *importer) and not under(module, *unless)
        for target in targets
        if under(target, *forbidden)
    )


def test_the_walk_sees_the_package_s_imports_including_local_and_type_only_ones() -> None:
    """The checker itself: a known top-level, a known function-local import and a known module."""
    found = imports()
    assert "skinscreen.db.tables" in found["skinscreen.db.queries"]
    assert "skinscreen.db.exports" in found["skinscreen.db.verdicts"]  # imported inside add_review
    assert "skinscreen.flagging" in found["skinscreen.models.screening"]  # `from skinscreen import flagging`
    assert under("skinscreen.models.training.train", "models") and not under("skinscreen.modelsx", "models")


def test_the_database_layer_imports_no_model_network_or_web_code() -> None:
    assert (
        breaches(("db",), ("models", "dicomnet", "review", "sites", "ops", "worker", "ingest", "cli")) == []
    )


def test_the_model_layer_s_serving_code_imports_no_database_code() -> None:
    """`db/` and `models/` serving sit side by side: neither imports the other."""
    assert breaches(("models",), ("db",), unless=("models.training",)) == []


@pytest.mark.parametrize("leaf", LEAVES)
def test_a_leaf_imports_nothing_of_the_package(leaf: str) -> None:
    assert imports()[f"skinscreen.{leaf}"] == frozenset()


def test_serving_code_imports_no_training_code() -> None:
    assert breaches(SERVING, ("models.training",), unless=("models.training",)) == []


def test_no_module_imports_another_module_s_private_name() -> None:
    """A private helper borrowed across modules is a second write path in the making."""
    borrowed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("skinscreen"):
                borrowed += [
                    f"{module_name(path)}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert borrowed == []
