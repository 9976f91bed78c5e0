"""Where the shipped data files are: inside the wheel, or at the top of a source checkout."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_path(name: str) -> Path:
    """The folder `name` (mappings, web, fixtures/demo) of this installation."""
    installed = _PACKAGE / "_data" / name
    if installed.exists():
        return installed
    return _PACKAGE.parent / name


def mappings_dir() -> Path:
    return data_path("mappings")


def web_dir() -> Path:
    return data_path("web")


def demo_fixtures_dir() -> Path:
    return data_path("fixtures/demo")
