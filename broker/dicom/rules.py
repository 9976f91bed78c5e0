"""Per-calling-AE worklist rules from [worklist] calling_ae_rules (opt-in, none by default).

A rule reads "CT1: station=CT1 modality=CT". When scanner CT1 leaves the station (or modality)
key empty, the query is narrowed to those values. `station=@calling` means the caller's own AE
title, and "*" as the AE title makes the rule apply to every caller without a rule of its own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_RULE = re.compile(r"^\s*(?P<ae>[^:\s][^:]{0,15}?)\s*:\s*(?P<body>.*)$")
_ITEM = re.compile(r"^(station|modality)=([^\s=]+)$")
CALLING = "@calling"


class RuleError(ValueError):
    """A calling_ae_rules entry that cannot be read; the message names it."""


@dataclass(frozen=True)
class AeRule:
    stations: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()

    def stations_for(self, calling_ae: str) -> list[str]:
        """The station AE titles an empty station key stands for, for this caller."""
        return [calling_ae if s == CALLING else s for s in self.stations]


@lru_cache(maxsize=32)
def parse_rules(entries: tuple[str, ...]) -> dict[str, AeRule]:
    """calling AE title -> rule; RuleError for an entry that is not 'AE: key=value ...'."""
    rules: dict[str, AeRule] = {}
    for entry in entries:
        match = _RULE.match(entry)
        if not match:
            raise RuleError(f"calling_ae_rules: {entry!r} is not 'AE: station=X modality=Y'")
        stations: list[str] = []
        modalities: list[str] = []
        for item in match["body"].split():
            found = _ITEM.match(item)
            if not found:
                raise RuleError(f"calling_ae_rules: {item!r} in {entry!r} is not station=X or modality=Y")
            target = stations if found[1] == "station" else modalities
            target.extend(v for v in found[2].split(",") if v)
        rules[match["ae"].strip()] = AeRule(tuple(stations), tuple(m.upper() for m in modalities))
    return rules
