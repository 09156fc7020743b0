"""The import rule of ARCHITECTURE.md: the shared core depends on nothing of the
project, and neither side imports the other's internals."""

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
