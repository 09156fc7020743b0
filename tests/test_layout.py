"""The import rules of ARCHITECTURE.md: the shared core depends on nothing of the
project, neither side imports the other's internals, and inside models_py the
layers go one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("recsys_core", "seeds_gen", "models_py")
ALLOWED = {
    "recsys_core": {"recsys_core"},
    "seeds_gen": {"recsys_core", "seeds_gen"},
    "models_py": {"recsys_core", "models_py"},
}


def project_imports(package: str) -> set[tuple[str, str]]:
    """(module file, imported project package) for every import in ``package``."""
    found = set()
    for path in (REPO / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES:
                    found.add((path.name, top))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_what_the_architecture_allows(package):
    wrong = {(f, top) for f, top in project_imports(package) if top not in ALLOWED[package]}
    assert not wrong, f"{package} imports {sorted(wrong)}"


# ARCHITECTURE.md, "Who may import whom": each module imports only from its own
# layer or the ones before it.
MODELS_PY_LAYERS = [
    {"config", "metrics", "runs", "distributed", "warehouse", "workspace"},
    {"registry", "store", "data", "stream", "pipeline"},
    {"model", "checkpoint"},
    {"wide_fit", "train", "calibration"},
    {"baselines", "evaluate", "ablation", "serving", "ranking", "counterfactual", "tracking"},
    {"cli", "bench", "quality", "__main__", "__init__"},
]


def test_models_py_layers_import_one_way():
    layer = {name: i for i, names in enumerate(MODELS_PY_LAYERS) for name in names}
    modules = {path.stem for path in (REPO / "models_py").glob("*.py")}
    assert modules == set(layer), "every module belongs to one layer"
    upward = []
    for path in (REPO / "models_py").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            if node.module == "models_py":
                imported = [alias.name for alias in node.names]
            elif node.module.startswith("models_py."):
                imported = [node.module.split(".")[1]]
            else:
                continue
            upward += [(path.stem, m) for m in imported if layer[m] > layer[path.stem]]
    assert not upward, f"imports against the layer order: {sorted(upward)}"
