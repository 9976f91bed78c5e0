"""HL7 v2 messages as an EHR sends them, for tests: ORM^O01 orders and ADT events."""
from __future__ import annotations


def orm(control_id: str, control: str, placer: str = "P1", accession: str = "A1",
        pid: str = "MRN1", orc5: str = "", when: str = "202611241000", version: str = "2.3.1",
        extra_group: str = "") -> bytes:
    """An ORM^O01 with one order group (ORC-1 `control`) for patient `pid`."""
    text = "\r".join([
        f"MSH|^~\\&|EHR|HOSP|BROKER|RAD|20261123080000||ORM^O01|{control_id}|P|{version}",
        f"PID|1||{pid}^^^HOSP^MR||Doe^Jane||19800101|F",
        "PV1|1|O|RAD^^^HOSP",
        f"ORC|{control}|{placer}^EHR|||{orc5}||^^^{when}^^R",
        f"OBR|1|{placer}^EHR||CTHEAD^CT head^L||||||||||||||{accession}|RP{placer}|SPS{placer}||||CT",
    ]) + extra_group
    return text.encode()


def adt(control_id: str, event: str, pid: str = "MRN1", name: str = "Doe^Jane",
        mrg: str = "", evn_time: str = "20261124080000") -> bytes:
    """An ADT^`event` (v2.5) for patient `pid`, with an MRG naming `mrg` when given."""
    segments = [f"MSH|^~\\&|EHR|HOSP|BROKER|RAD|20261123080000||ADT^{event}|{control_id}|P|2.5",
                f"EVN|{event}|{evn_time}", f"PID|1||{pid}^^^HOSP^MR||{name}||19800101|F"]
    if mrg:
        segments.append(f"MRG|{mrg}^^^HOSP^MR")
    return "\r".join(segments).encode()
