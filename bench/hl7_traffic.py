"""The HL7 v2.3.1 messages bench/hl7_ingest.py sends: registrations and orders for people from
bench/population.py (varied names, birth dates, addresses), each with a unique control id.

Only message text lives here: nothing in this module knows how the broker stores what it gets.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace

from population import FAMILY, GIVEN_F, GIVEN_M, Generator, Person

SENDER = "BENCH|HOSP"  # MSH-3|MSH-4: one sending facility, so control ids must never repeat
ISSUER = "HOSP"        # PID-3.4, the assigning authority of every MRN

_MSH = "MSH|^~\\&|{sender}|BROKER|RAD|20261123081500||{type}|{control}|P|2.3.1||||||UNICODE UTF-8"
_PID = "PID|1||{mrn}^^^{issuer}^MR||{name}||{birth}|{sex}|||{address}||{phone}"
_PV1 = "PV1|1|O|RAD^CT1^^HOSP|||||4455^House^Gregory^^^Dr"
_ORDER = (
    "ORC|NW|ORD{n}^EHR|||SC||^^^202611240930^^R||20261123081500|||4455^House^Gregory^^^Dr\r"
    "OBR|1|ORD{n}^EHR||CTCHEST^CT chest with contrast^L|||20261123081500|||||||||"
    "4455^House^Gregory^^^Dr||A{n}|RP{n}|SPS{n}||||CT|||^^^202611240930^^R||||^Cough^L\r"
    "ZDS|1.2.826.0.1.3680043.10.1254.9.{n}^BROKER^Application^DICOM"
)


@dataclass(frozen=True)
class Sent:
    """One message to send and what it must leave behind: its control id and its order."""
    control_id: str
    raw: bytes
    placer_order: str | None = None  # ORC-2.1 of an order; None for a registration


class Traffic:
    """Builds messages with control ids and order numbers that never repeat within a run."""

    def __init__(self, seed: int = 11) -> None:
        self.generator = Generator(seed)
        self.rng = random.Random(seed)
        self.serial = itertools.count(1)
        # A new family name for every look-alike group, so that no two groups merge into one.
        self.families = iter(self.rng.sample(FAMILY, len(FAMILY)))

    def people(self, count: int) -> list[Person]:
        """`count` distinct realistic people (households, diacritics, particles, twins)."""
        return self.generator.people(count)

    def look_alikes(self, count: int) -> list[Person]:
        """`count` new people sharing one family name and one birth date, each with a different
        given (and middle) name and MRN: the blocking key of a patient search is the same for
        all of them, the worst case for candidate scoring."""
        template = self.generator.people(1)[0]
        family = next(self.families)
        pairs = [(g, m, sex) for sex, names in (("F", GIVEN_F), ("M", GIVEN_M))
                 for g in names for m in names if g != m]
        self.rng.shuffle(pairs)
        others = self.generator.people(count)  # addresses and phones vary as in life
        # PN given^middle (XPN components 2 and 3) in one field: Person has no middle name.
        return [replace(other, family=family, given=f"{given}^{middle}", sex=sex,
                        birth_date=template.birth_date)
                for other, (given, middle, sex) in zip(others, pairs)]

    def registration(self, person: Person) -> Sent:
        """ADT^A04 (register a patient), as the EHR sends before any order."""
        control = f"R{next(self.serial)}"
        segments = [_header("ADT^A04", control), "EVN|A04|20261123081500", _pid(person), _PV1]
        return Sent(control, "\r".join(segments).encode("utf-8"))

    def order(self, person: Person) -> Sent:
        """ORM^O01 new order (ORC-1 NW) for `person`, with its own accession and study UID."""
        n = next(self.serial)
        control = f"O{n}"
        segments = [_header("ORM^O01", control), _pid(person), _PV1, _ORDER.format(n=n)]
        return Sent(control, "\r".join(segments).encode("utf-8"), placer_order=f"ORD{n}")


def _header(message_type: str, control: str) -> str:
    return _MSH.format(sender=SENDER, type=message_type, control=control)


def _pid(person: Person) -> str:
    # population.py writes "12 Mill Lane, Leeds"; PID-11 (XAD) is street^other^city^state^zip.
    street, _, city = person.address.partition(", ")
    address = f"{street}^^{city}^^{_postcode(person.identifier)}" if person.address else ""
    name = f"{person.family}^{person.given}"
    return _PID.format(mrn=person.identifier, issuer=ISSUER, name=name, birth=person.birth_date,
                       sex=person.sex, address=address, phone=person.phone)


def _postcode(identifier: str) -> str:
    # Derived from the MRN, so one person's every message carries the same address.
    digits = int("".join(c for c in identifier if c.isdigit()) or 0)
    return f"{digits * 7919 % 90000 + 10000}"
