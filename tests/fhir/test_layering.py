"""Reading and mapping FHIR resources stays free of I/O: no database, HTTP or web framework."""
import ast
from pathlib import Path

import pytest

FHIR = Path(__file__).resolve().parents[2] / "broker" / "fhir"
FORBIDDEN = ("sqlalchemy", "requests", "flask", "werkzeug", "socket", "broker.store",
             "broker.hl7", "broker.dicom")


@pytest.mark.parametrize("name", ["mapping.py", "orders.py", "notifications.py"])
def test_fhir_reading_imports_no_io(name):
    tree = ast.parse((FHIR / name).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not [m for m in imported if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
