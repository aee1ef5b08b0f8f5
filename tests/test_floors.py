"""No import runs up a floor (docs/architecture.md, "Floors").

Every module's imports are read from its syntax tree, the lazy ones inside functions too, and each
must name its own package or one the package may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOUNDATION = {"owtrain"}
PARTS = FOUNDATION | {"dataset_packer"}
MAY_IMPORT = {
    "owtrain": set(),
    "dataset_packer": FOUNDATION,
    "param_server": PARTS,
    "actions": PARTS,
    "wsk": PARTS,
    "serving": PARTS | {"param_server", "actions", "wsk"},
    "localrun": PARTS | {"param_server", "actions", "wsk", "serving"},  # it publishes the model it trained
    "commands": PARTS | {"param_server", "actions", "wsk", "localrun", "serving"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def test_no_import_runs_up_a_floor():
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, target in _imports(path):
                if target in MAY_IMPORT and target != package and target not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} (a floor above, or a peer)")
    assert not wrong, "\n".join(wrong)


def test_every_package_has_a_floor():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(MAY_IMPORT), "add the new package to MAY_IMPORT and to docs/architecture.md"
