"""C-FIND pending responses with their command set encoded directly (PS3.7 9.3.2.2, E.1).

pynetdicom builds each response's command set as a pydicom Dataset and encodes it twice (once
for the group length); for a worklist answer of many items that is the largest cost per item.
A pending response's command set is five fixed elements, so it is packed here with struct.
Anything else (success, cancel, failure, optional elements) goes through pynetdicom unchanged.
"""
from __future__ import annotations

import struct
from typing import Iterator

from pynetdicom import dimse
from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_FIND_RSP as PynetdicomFindResponse
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.pdu_primitives import P_DATA

PENDING = (0xFF00, 0xFF01)
C_FIND_RSP_COMMAND = 0x8020
DATA_SET_PRESENT = 0x0001
# PS3.8 E.2 message control header: bit 0 command (1) or data set (0), bit 1 last fragment.
_CONTROL = {(True, False): b"\x01", (True, True): b"\x03",
            (False, False): b"\x00", (False, True): b"\x02"}


def _us(element: int, value: int) -> bytes:
    return struct.pack("<HHIH", 0x0000, element, 2, value)


def _ui(element: int, uid: str) -> bytes:
    data = uid.encode("ascii")
    if len(data) % 2:
        data += b"\0"
    return struct.pack("<HHI", 0x0000, element, len(data)) + data


def pending_command_set(sop_class_uid: str, message_id: int, status: int) -> bytes:
    """The Implicit VR Little Endian command set of a pending C-FIND-RSP (PS3.7 Table 9.3-2)."""
    body = (_ui(0x0002, sop_class_uid) + _us(0x0100, C_FIND_RSP_COMMAND)
            + _us(0x0120, message_id) + _us(0x0800, DATA_SET_PRESENT) + _us(0x0900, status))
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


class C_FIND_RSP(PynetdicomFindResponse):  # noqa: N801 - pynetdicom looks classes up by name
    """A C-FIND-RSP message whose pending responses skip pydicom for the command set.

    pynetdicom's template command set is only built for the other responses. For pending ones
    `command_set` stays empty: EVT_DIMSE_SENT handlers would see no values (the broker binds none).
    """

    def __init__(self) -> None:  # the template is built on demand, see primitive_to_message
        self._packed: bytes | None = None
        self.context_id: int | None = None
        self.data_set = None
        self.command_set = Dataset()

    def primitive_to_message(self, primitive: C_FIND) -> None:
        if (primitive.Status in PENDING and primitive.Identifier is not None
                and primitive.ErrorComment is None and primitive.OffendingElement is None):
            self._packed = pending_command_set(str(primitive.AffectedSOPClassUID),
                                               primitive.MessageIDBeingRespondedTo,
                                               primitive.Status)
            self.data_set = primitive.Identifier
            return
        super().__init__()
        super().primitive_to_message(primitive)

    def encode_msg(self, context_id: int, max_pdu_length: int) -> Iterator[P_DATA]:
        if self._packed is None:
            yield from super().encode_msg(context_id, max_pdu_length)
            return
        self.context_id = context_id
        yield from self._fragments(context_id, self._packed, max_pdu_length, command=True)
        yield from self._fragments(context_id, self.data_set.getvalue(), max_pdu_length,
                                   command=False)

    def _fragments(self, context_id: int, data: bytes, max_pdu_length: int,
                   command: bool) -> Iterator[P_DATA]:
        fragments = list(self._generate_pdv_fragments(data, max_pdu_length))
        for index, fragment in enumerate(fragments):
            pdata = P_DATA()
            last = index == len(fragments) - 1
            pdata.presentation_data_value_list.append(
                (context_id, _CONTROL[(command, last)] + fragment))
            yield pdata


def install() -> None:
    """Make pynetdicom send C-FIND responses through this module's C_FIND_RSP."""
    dimse._RSP_TO_MESSAGE[C_FIND] = C_FIND_RSP
