"""The package's three layers import downwards only: core <- experiments <- book (see recloss_lite/__init__.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "recloss_lite"
LAYERS = ("core", "experiments", "book")  # each may import the ones before it, never the ones after


def _imported_layers(path: Path) -> set[str]:
    """The layers a module imports, from its absolute and relative import statements (nested ones included; a
    relative import is resolved against the module's own package, at any depth)."""
    package = ["recloss_lite", *path.parent.relative_to(PACKAGE).parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "recloss_lite" and len(parts) > 1 and parts[1] in LAYERS:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_only_downwards(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    modules = sorted((PACKAGE / layer).rglob("*.py"))
    assert modules, f"no modules in {PACKAGE / layer}"
    wrong = {str(module.relative_to(PACKAGE)): sorted(_imported_layers(module) - allowed) for module in modules}
    assert not {name: layers for name, layers in wrong.items() if layers}, wrong


def test_every_module_lives_in_a_layer() -> None:
    loose = sorted(path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py")
    assert loose == [], f"modules outside core/, experiments/ and book/: {loose}"
