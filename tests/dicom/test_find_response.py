"""The packed pending C-FIND-RSP is byte for byte what pynetdicom itself would send."""
from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_FIND_RSP as PynetdicomFindResponse
from pynetdicom.dimse_primitives import C_FIND

from broker.dicom.find_response import C_FIND_RSP


def primitive(status: int, message_id: int, sop_class: str, identifier: bytes | None,
              comment: str | None = None) -> C_FIND:
    rsp = C_FIND()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = sop_class
    rsp.Status = status
    if identifier is not None:
        rsp.Identifier = BytesIO(identifier)
    if comment:
        rsp.ErrorComment = comment
    return rsp


def pdvs(cls, max_pdu: int, **kwargs) -> list:
    message = cls()
    message.primitive_to_message(primitive(**kwargs))
    return [p.presentation_data_value_list for p in message.encode_msg(3, max_pdu)]


ITEM = b"\x10\x00\x10\x00\x04\x00\x00\x00ABCD" * 50
CASES = [
    ("pending", dict(status=0xFF00, message_id=1, sop_class="1.2.840.10008.5.1.4.31",
                     identifier=ITEM)),
    ("pending, optional keys unsupported", dict(status=0xFF01, message_id=65535,
                                                sop_class="1.2.840.10008.5.1.4.31", identifier=ITEM)),
    ("odd-length UID", dict(status=0xFF00, message_id=2, sop_class="1.2.3", identifier=ITEM)),
    ("final success", dict(status=0x0000, message_id=9, sop_class="1.2.840.10008.5.1.4.31",
                           identifier=None)),
    ("failure with comment", dict(status=0xC000, message_id=4, sop_class="1.2.840.10008.5.1.4.31",
                                  identifier=None, comment="bad date")),
]


@pytest.mark.parametrize("max_pdu", [0, 16384, 120])
@pytest.mark.parametrize("kwargs", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_same_bytes_as_pynetdicom(kwargs, max_pdu):
    assert pdvs(C_FIND_RSP, max_pdu, **kwargs) == pdvs(PynetdicomFindResponse, max_pdu, **kwargs)
