"""The layers' rule (ARCHITECTURE.md): each layer imports only layers below it, and no import circles.

Every `import` in the library is read with `ast`, those inside functions too
(a lazy import is still a dependency).
"""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FOLDERS = {"splitnn": "splitnn", "cli": "splitnn.cli", "onnxsplit": "splitnn.onnxsplit", "cost_models": "splitnn.cost_models",
           "sample_models": "splitnn.sample_models"}

# From the ground up. Layers on one rank (vertical, tiles, pipeline) may not import each other.
LAYERS = [
    ("splitnn.onnxsplit.core", 0),
    ("splitnn.onnxsplit.model", 1),
    ("splitnn.onnxsplit.codecs", 1),
    ("splitnn.sample_models", 1),
    ("splitnn.cost_models", 2),
    ("splitnn.onnxsplit.analysis", 3),
    ("splitnn.onnxsplit.artifacts", 4),
    ("splitnn.onnxsplit.vertical", 5),
    ("splitnn.onnxsplit.tiles", 5),
    ("splitnn.onnxsplit.pipeline", 5),
    ("splitnn.onnxsplit.runtime", 6),
    ("splitnn.onnxsplit.measure", 7),
    ("splitnn.onnxsplit.jobs", 8),  # whole jobs (partition) from typed option records, for the API and the CLI
    ("splitnn.onnxsplit.api", 9),  # the Python API: the library's main jobs as typed functions
    ("splitnn.cli", 10),
    ("splitnn", 11),  # the package's own __init__: the API's names, loaded on first use
]


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {i for i in out if i.startswith("splitnn.")}


def _layer(module: str) -> tuple[str, int] | None:
    best = None
    for prefix, rank in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, rank)
    return best


MODULES = _modules()
GRAPH = {name: {i for i in _imports(name, path) if i in MODULES and i != name} for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in MODULES if m not in {"splitnn.onnxsplit"} and _layer(m) is None)
    assert unplaced == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_lower_layers(module: str) -> None:
    own = _layer(module)
    if own is None:
        return
    bad = []
    for target in GRAPH[module]:
        theirs = _layer(target)
        if theirs is None or theirs[0] == own[0]:
            continue
        if theirs[1] >= own[1]:
            bad.append(f"{target} ({theirs[0]})")
    assert bad == [], f"{module} ({own[0]}) imports from its own rank or above"


def test_no_import_circles() -> None:
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    # A package's __init__ re-exporting its own modules is not a circle between concepts.
    real = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") or c[0].startswith(m + ".") for m in c)]
    assert real == []


def test_every_package_is_installed() -> None:
    """pyproject lists each package folder under the one `splitnn` name (a folder left out would not install)."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert packages == listed


def _function_lengths() -> list[tuple[int, str]]:
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
    return found


def test_functions_are_short_enough_to_read_at_once() -> None:
    """No function in the library or the CLI runs past 60 lines (docstring included)."""
    assert sorted(f"{where} ({lines} lines)" for lines, where in _function_lengths() if lines > 60) == []


def test_commands_take_about_ten_parameters_at_most() -> None:
    """Option groups keep each command's signature short (cli/options.py)."""
    import inspect

    import click

    from splitnn.cli.main import COMMANDS, cli

    counts = {}
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        for sub in command.commands.values() if isinstance(command, click.Group) else [command]:
            counts[f"{name} {sub.name}"] = len(inspect.signature(inspect.unwrap(sub.callback)).parameters)
    assert counts["partition partition"] == 10 and counts["run-bench run-bench"] == 6  # the two largest, grouped
    assert {k: v for k, v in counts.items() if v > 10} == {}
