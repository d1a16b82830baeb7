"""The import graph follows CONTRIBUTING.md's layer table: no upward import, no cycle.

Run alone with ``pytest tests/test_layers.py``: it parses every module of the installed
package (``rxllm`` and ``rxllm.operators``) with :mod:`ast`, including imports inside
functions and under ``TYPE_CHECKING`` (a lazy import is still a dependency), and
``importlib.import_module("rxllm.…")`` calls with a literal name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import rxllm
import rxllm.operators

CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"
_ROW = re.compile(r"^\|\s*(\d+)\s*\|(.*?)\|")


def layer_table() -> dict[str, int]:
    """Module-name prefix -> layer, from the table in CONTRIBUTING.md."""
    table: dict[str, int] = {}
    for line in CONTRIBUTING.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            for name in re.findall(r"`([\w.]+)`", match.group(2)):
                table[name] = int(match.group(1))
    return table


def layer_of(module: str, table: dict[str, int]) -> int | None:
    """The layer of the longest table prefix that names ``module`` or a package above it."""
    best: tuple[int, int] | None = None
    for prefix, layer in table.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), layer)
    return None if best is None else best[1]


def package_modules() -> dict[str, Path]:
    """Every module of rxllm and rxllm.operators (wherever setuptools put operators/)."""
    found: dict[str, Path] = {}
    roots = (("rxllm", Path(rxllm.__file__).parent), ("rxllm.operators", Path(rxllm.operators.__file__).parent))
    for package, root in roots:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "rxllm" and parts[:1] == ["operators"]:
                continue
            found[".".join([package, *parts])] = path
    return found


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """The rxllm modules ``module`` imports, resolved to names in ``known`` (or their package)."""
    is_package = path.name == "__init__.py"
    base = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                origin = ".".join(anchor + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{alias.name}" for alias in node.names] + [origin]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets = [node.args[0].value]
        for target in targets:
            if target != "rxllm" and not target.startswith("rxllm."):
                continue
            # "from rxllm.x import name": the edge is to rxllm.x.name if that is a module, else to rxllm.x
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != module:
                yield target
            if isinstance(node, ast.ImportFrom):
                break  # the first resolvable target of a from-import is the edge


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: set(imports_of(name, path, known)) for name, path in modules.items()}


class TestLayers:
    def test_the_table_parses(self) -> None:
        """CONTRIBUTING.md has a layer table naming the core modules."""
        table = layer_table()

        assert table["rxllm.errors"] < table["rxllm.types"] < table["rxllm.builder"] < table["rxllm.operators"]
        assert table["rxllm.operators"] < table["rxllm.api"] < table["rxllm.proxy"]

    def test_every_module_has_a_layer(self, graph: dict[str, set[str]]) -> None:
        """Each module of the package is placed in the table (a new module must be given a layer)."""
        table = layer_table()

        assert [m for m in graph if layer_of(m, table) is None] == []

    def test_no_upward_import(self, graph: dict[str, set[str]]) -> None:
        """No module imports one from a higher layer."""
        table = layer_table()
        upward = [
            f"{module} (layer {layer_of(module, table)}) imports {target} (layer {layer_of(target, table)})"
            for module, targets in graph.items()
            for target in targets
            if (layer_of(target, table) or 0) > (layer_of(module, table) or 0)
        ]

        assert upward == []

    def test_no_cycle(self, graph: dict[str, set[str]]) -> None:
        """The module graph (package __init__ re-exports aside) has no cycle."""
        inits = {"rxllm", "rxllm.operators", "rxllm.proxy", "rxllm.providers", "rxllm.dialects"}
        edges = {m: {t for t in ts if t not in inits or t == m} for m, ts in graph.items()}
        cycles: list[list[str]] = []
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(node: str) -> None:
            state[node] = 1
            stack.append(node)
            for nxt in sorted(edges.get(node, ())):
                if state.get(nxt) == 1:
                    cycles.append([*stack[stack.index(nxt) :], nxt])
                elif nxt not in state:
                    visit(nxt)
            stack.pop()
            state[node] = 2

        for node in sorted(edges):
            if node not in state and node not in inits:
                visit(node)

        assert cycles == []

    def test_the_checker_sees_an_upward_import(self, tmp_path: Path) -> None:
        """The walker resolves a lazy, relative or importlib import of a higher layer (it can fail)."""
        source = tmp_path / "probe.py"
        source.write_text(
            "import importlib\n"
            "def f():\n"
            "    from rxllm.api import stream\n"
            "    importlib.import_module('rxllm.providers._http')\n",
            encoding="utf-8",
        )
        known = {"rxllm.api", "rxllm.providers._http", "rxllm.loop"}

        assert set(imports_of("rxllm.loop", source, known)) == {"rxllm.api", "rxllm.providers._http"}
