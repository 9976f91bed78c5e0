"""The domain, mapping and matching code stays free of I/O and protocol libraries."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "broker"
PURE = ["domain", "mapping", "matching"]
FORBIDDEN = {"sqlalchemy", "pynetdicom", "flask", "asyncio", "socket", "hl7apy", "werkzeug",
             "apscheduler", "broker.store", "broker.hl7", "broker.dicom", "broker.admin"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_import_no_io(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []
