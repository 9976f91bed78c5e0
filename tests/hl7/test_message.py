import pytest

from broker.hl7.message import Hl7ParseError, decode, parse

ORM = (b"MSH|^~\\&|EPIC|GENHOSP|BROKER|RAD|20261123080000||ORM^O01|CTRL1|P|2.3.1\r"
       b"PID|||MRN1^^^HOSP^MR~S55^^^STATE^SS||O\\S\\Brien^Pat\\T\\Co\r"
       b"OBR|1|PO1||CT^Head\\F\\Neck^L\r")


def test_header_fields():
    msg = parse(ORM)
    assert (msg.message_type, msg.control_id, msg.version) == ("ORM^O01", "CTRL1", "2.3.1")
    assert msg.sender == "EPIC|GENHOSP"
    assert msg.get("MSH", 1) == "|" and msg.get("MSH", 2) == "^~\\&"


def test_repetitions_components_and_escapes():
    msg = parse(ORM)
    pid = msg.segment("PID")
    assert msg.repetitions(pid, 3) == 2
    assert msg.field(pid, 3, rep=2, comp=4) == "STATE"
    assert msg.field(pid, 5, comp=1) == "O^Brien"
    assert msg.field(pid, 5, comp=2) == "Pat&Co"
    assert msg.get("OBR", 4, comp=2) == "Head|Neck"
    assert msg.get("OBR", 99) == "" and msg.get("ZZZ", 1) == ""


def test_subcomponents_are_read_from_the_component_they_belong_to():
    msg = parse(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5.1\r"
                b"PID|||1||van&der&Berg^Anna~Smith||||||Main St&12^^Leeds")
    pid = msg.segment("PID")
    assert [msg.field(pid, 5, comp=1, sub=n) for n in (1, 2, 3, 4)] == ["van", "der", "Berg", ""]
    assert msg.field(pid, 5, comp=2, sub=2) == "" and msg.field(pid, 5, rep=2) == "Smith"
    assert msg.field(pid, 11, comp=1) == "Main St" and msg.field(pid, 11, comp=3) == "Leeds"


def test_components_of_a_field_in_one_call():
    msg = parse(ORM)
    pid = msg.segment("PID")
    # Each component's first subcomponent, unescaped; a repetition or field that is not
    # there gives no components.
    assert msg.components(pid, 5) == ["O^Brien", "Pat&Co"]
    assert msg.components(pid, 3, rep=2) == ["S55", "", "", "STATE", "SS"]
    assert msg.components(pid, 3, rep=3) == [] and msg.components(pid, 4) == []
    assert msg.components(msg.segment("OBR"), 2) == ["PO1"]
    sub = parse(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5.1\rPID|||1||van&der^Anna")
    assert sub.components(sub.segment("PID"), 5) == ["van", "Anna"]


@pytest.mark.parametrize("charset,raw_name,expected", [
    (b"8859/1", "Müller".encode("latin-1"), "Müller"),
    (b"UNICODE UTF-8", "Müller".encode("utf-8"), "Müller"),
    (b"", "Müller".encode("utf-8"), "Müller"),       # mislabelled as ASCII: UTF-8 tried first
    (b"", "Müller".encode("latin-1"), "Müller"),     # then Latin-1
])
def test_character_sets(charset, raw_name, expected):
    raw = (b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5.1||||||" + charset + b"\rPID|||1||" + raw_name)
    assert parse(raw).get("PID", 5) == expected


def test_hex_escape():
    raw = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5.1\rPID|||1||M\\XFC\\ller"
    assert parse(raw).get("PID", 5) == "Müller"


@pytest.mark.parametrize("raw,reason", [
    (b"", "MSH"),
    (b"HELLO WORLD", "MSH"),
    (b"MSH|^~\\&|A|B|C|D|x||ADT^A08|1|P|2.5.1||||||KLINGON", "character set"),
    (b"MSH|^~\\&|A|B\r!!!|bad", "segment name"),
])
def test_unreadable(raw, reason):
    with pytest.raises(Hl7ParseError, match=reason):
        parse(raw)


def test_bad_utf8_declared_is_an_error():
    with pytest.raises(Hl7ParseError, match="not valid"):
        decode(b"MSH|^~\\&|A|B|C|D|x||ADT^A08|1|P|2.5.1||||||UNICODE UTF-8\rPID|||\xff\xfe")
