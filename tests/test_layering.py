"""The domain, mapping and patient-scoring code stays free of I/O and protocol libraries, and
reconciliation's modules import each other one way only."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "broker"
PURE = ["domain", "mapping", "matching/score"]
FORBIDDEN = {"sqlalchemy", "pynetdicom", "flask", "asyncio", "socket", "hl7apy", "werkzeug",
             "apscheduler", "broker.store", "broker.hl7", "broker.dicom", "broker.admin",
             "broker.matching.search", "broker.matching.queue", "broker.matching.searches"}


def _imports(path: Path) -> set[str]:
    """Every module the file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_import_no_io(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_importing_the_scorer_loads_no_database_or_network_library():
    # The package's __init__ runs first: this proves it too imports nothing impure.
    code = ("import sys, broker.matching.score; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sqlalchemy', 'pynetdicom', 'flask', 'asyncio', 'socket', 'hl7apy'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT.parent).stdout.split()
    assert loaded == []


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name}
            for name, path in modules.items()}


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


@pytest.mark.parametrize("module", ["broker.store.patients", "broker.store.merge",
                                    "broker.matching.queue", "broker.matching.search",
                                    "broker.matching.searches", "broker.matching.review"])
def test_reconciliation_modules_are_in_no_import_cycle(module):
    graph = _graph()
    assert [m for m in sorted(graph[module]) if _reaches(graph, m, module)] == []
