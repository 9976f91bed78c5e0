"""The procedure-code table (mappings/procedures.toml): code -> modality, station, duration."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path


class MappingError(ValueError):
    """A mapping file is wrong; the message names the file and line."""


@dataclass(frozen=True)
class ProcedureDefinition:
    code: str
    meaning: str = ""
    modality: str = ""
    station_ae_titles: tuple[str, ...] = ()
    station_name: str = ""
    duration_minutes: int = 0  # 0: unknown; else a step's end is its start plus this


_FIELDS = {"meaning": str, "modality": str, "station_ae_titles": list, "station_name": str,
           "duration_minutes": int}


def load_procedures(path: Path) -> dict[str, ProcedureDefinition]:
    """Read and validate the table; every error names the file and line."""
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: {exc}") from None
    table = data.get("procedures", {})
    result: dict[str, ProcedureDefinition] = {}
    for code, entry in table.items():
        where = f"{path}:{_line_of(text, code)}"
        if not isinstance(entry, dict):
            raise MappingError(f"{where}: procedure {code!r} must be a table")
        for key, value in entry.items():
            expected = _FIELDS.get(key)
            if expected is None:
                raise MappingError(f"{where}: procedure {code!r}: unknown key {key!r}")
            if not isinstance(value, expected) or isinstance(value, bool):
                raise MappingError(f"{where}: procedure {code!r}: {key} must be {expected.__name__}")
        titles = tuple(entry.get("station_ae_titles", ()))
        for title in titles:
            if not isinstance(title, str) or not 0 < len(title) <= 16 or "\\" in title:
                raise MappingError(f"{where}: procedure {code!r}: bad station AE title {title!r}")
        if entry.get("duration_minutes", 0) < 0:
            raise MappingError(f"{where}: procedure {code!r}: duration_minutes must not be negative")
        modality = entry.get("modality", "")
        if len(modality) > 16:
            raise MappingError(f"{where}: procedure {code!r}: modality longer than 16 characters")
        result[code] = ProcedureDefinition(
            code=code, meaning=entry.get("meaning", ""), modality=modality,
            station_ae_titles=titles, station_name=entry.get("station_name", ""),
            duration_minutes=entry.get("duration_minutes", 0))
    return result


def _line_of(text: str, code: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped in (f"[procedures.{code}]", f'[procedures."{code}"]'):
            return number
    return 1
