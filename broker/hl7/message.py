"""A small, fast HL7 v2 reader: segments, fields, repetitions, components, by 1-based address.

hl7apy's full parse costs ~10 ms per ORM; the intake path only needs field access, so it reads
the message with its own separators and leaves validation to the mapping.
"""
from __future__ import annotations

from dataclasses import dataclass


class Hl7ParseError(ValueError):
    """The bytes are not an HL7 v2 message; the message says what is wrong."""


class CharsetError(Hl7ParseError):
    """The bytes are not valid in the character set MSH-18 declares (or the one asked for)."""


# MSH-18 values (HL7 v2 table 0211) -> Python codecs.
CHARSETS = {
    "": "ascii", "ASCII": "ascii", "8859/1": "latin-1", "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8", "UNICODE": "utf-8", "UTF-8": "utf-8",
}
# Padding some senders leave after the last segment.
_TRAILING = "\x00\r\n\t "


@dataclass(frozen=True)
class Header:
    """MSH as far as the raw bytes alone tell it: what every answer must echo, even to a
    message that cannot be read any further."""
    sending_application: str = ""
    sending_facility: str = ""
    message_type: str = ""
    trigger_event: str = ""
    control_id: str = ""
    processing_id: str = ""
    version: str = ""

    @property
    def sender(self) -> str:
        """MSH-3|MSH-4, the key a resend is recognised by."""
        return f"{self.sending_application}|{self.sending_facility}"


def read_header(raw: bytes) -> Header | None:
    """The MSH segment read with the field separator at byte 4 (MSH-1) and nothing else
    trusted; None when the bytes do not start with an MSH segment."""
    if not raw.startswith(b"MSH") or len(raw) < 5 or raw[3:4] in (b"\r", b"\n") \
            or raw[3:4].isalnum():
        return None
    line = raw.replace(b"\n", b"\r").split(b"\r", 1)[0]
    # latin-1 reads any byte: the header is read even when the declared charset is wrong.
    fields = ["MSH", chr(raw[3])] + line.decode("latin-1").split(chr(raw[3]))[1:]
    encoding = fields[2] if len(fields) > 2 else ""
    component = encoding[0] if encoding and not encoding[0].isalnum() else "^"

    def part(number: int, index: int = 0) -> str:
        parts = fields[number].split(component) if number < len(fields) else []
        return parts[index].strip(_TRAILING) if index < len(parts) else ""
    code, trigger = part(9), part(9, 1)
    # MSH-10 is an ST: echoed whole, whatever it holds.
    control_id = fields[10].strip(_TRAILING) if len(fields) > 10 else ""
    return Header(part(3), part(4), f"{code}^{trigger}" if trigger else code, trigger,
                  control_id, part(11), part(12))


def decode(raw: bytes, charset: str | None = None) -> str:
    """Decode message bytes with the character set named in MSH-18 (or `charset`)."""
    return _decoded(raw, charset)[0]


def _decoded(raw: bytes, charset: str | None = None) -> tuple[str, str | None]:
    """The text, and the codec MSH-18 (or the override) names."""
    named = charset if charset is not None else _msh18(raw)
    codec = CHARSETS.get(named.upper())
    if codec is None:
        raise Hl7ParseError(f"unsupported character set: {named!r}")
    try:
        return raw.decode(codec), codec
    except UnicodeDecodeError as exc:
        # Senders often label Latin-1 or UTF-8 data as ASCII; try UTF-8, then Latin-1 (never fails).
        if codec == "ascii":
            try:
                return raw.decode("utf-8"), codec
            except UnicodeDecodeError:
                return raw.decode("latin-1"), codec
        raise CharsetError(f"byte {exc.start} (0x{raw[exc.start]:02X}) is not valid "
                           f"{named or 'ASCII'}; reprocess with the character set it was sent "
                           "in") from None


def _msh18(raw: bytes) -> str:
    header = read_header(raw)
    if header is None:
        raise Hl7ParseError("message does not start with an MSH segment")
    line = raw.replace(b"\n", b"\r").split(b"\r", 1)[0]
    fields = line.split(raw[3:4])
    # fields[0] is "MSH", fields[1] is MSH-2; so MSH-n is fields[n-1].
    value = fields[17] if len(fields) > 17 else b""
    return value.split(raw[4:5] or b"^", 1)[0].decode("ascii", "replace").strip()


@dataclass(frozen=True)
class Separators:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


def _separators(text: str) -> Separators:
    """MSH-1 and the MSH-2 encoding characters (component, repetition, escape, subcomponent)."""
    enc = text[4:8].split(text[3], 1)[0]
    if not enc or len(set(enc)) != len(enc) or any(c.isalnum() or c in "\r\n" for c in enc):
        raise Hl7ParseError(f"MSH-2 encoding characters {enc!r} are not usable")
    return Separators(text[3], enc[0], enc[1] if len(enc) > 1 else "~",
                      enc[2] if len(enc) > 2 else "\\", enc[3] if len(enc) > 3 else "&")


class Message:
    """An HL7 v2 message read for field access: `msg.get("PID", 3, rep=1, comp=1)`."""

    def __init__(self, text: str, codec: str = "latin-1") -> None:
        """`codec`: how \\Xhh..\\ escapes decode (parse() takes it from MSH-18)."""
        self.codec = codec
        if not text.startswith("MSH") or len(text) < 8:
            raise Hl7ParseError("message does not start with an MSH segment")
        sep = self.sep = _separators(text)
        # Read by field() for every value: plain attributes are the cheapest to reach.
        self._comp, self._rep, self._sub, self._esc = (sep.component, sep.repetition,
                                                       sep.subcomponent, sep.escape)
        if "\n" in text:
            text = text.replace("\r\n", "\r").replace("\n", "\r")
        self.segments: list[tuple[str, list[str]]] = []
        for line in text.rstrip(_TRAILING).split("\r"):
            if not line.strip(_TRAILING):
                continue
            fields = line.split(sep.field)
            name = fields[0]
            if len(name) != 3 or not name.isalnum():
                raise Hl7ParseError(f"bad segment name {name[:10]!r}")
            if name == "MSH":
                # MSH-1 is the field separator itself; shift so fields[n] is MSH-n.
                fields = ["MSH", self.sep.field] + fields[1:]
            self.segments.append((name, fields))
        msh = self.segments[0][1]
        self._msh = msh
        self._first: dict[str, list[str]] = {}
        self._split: dict[str, list[list[str]]] = {}
        for name, fields in reversed(self.segments):
            self._first[name] = fields
        # Header fields every handler and the ACK need, read once.
        self.sending_application = self.field(msh, 3)
        self.sending_facility = self.field(msh, 4)
        code, self.trigger_event = self.field(msh, 9, comp=1), self.field(msh, 9, comp=2)
        self.message_type = f"{code}^{self.trigger_event}" if self.trigger_event else code
        # MSH-10 is an ST: the whole field, as the sender matches its ACK by it.
        self.control_id = self.unescape(msh[10]) if len(msh) > 10 else ""
        self.processing_id = self.field(msh, 11)
        self.version = self.field(msh, 12)
        # MSH-3 sending application and MSH-4 sending facility, as one key.
        self.sender = f"{self.sending_application}|{self.sending_facility}"

    def segments_named(self, name: str) -> list[list[str]]:
        """All segments with this name, in order, each a list indexed by field number."""
        return [fields for seg, fields in self.segments if seg == name]

    def segment(self, name: str) -> list[str] | None:
        """The first segment with this name, or None."""
        return self._first.get(name)

    def field(self, fields: list[str] | None, number: int, rep: int = 1, comp: int = 1,
              sub: int = 1, raw: bool = False) -> str:
        """One value of a segment by 1-based field, repetition, component and subcomponent."""
        if fields is None or number >= len(fields):
            return ""
        value = fields[number]
        if not value:
            return ""
        if number <= 2 and fields[0] == "MSH":
            return value
        if self._comp not in value and self._rep not in value and self._sub not in value:
            # Most fields hold one simple value: nothing to split.
            if rep == 1 and comp == 1 and sub == 1:
                return value if raw or self._esc not in value else self.unescape(value)
            return ""
        try:
            text = self._tree(value)[rep - 1][comp - 1]
        except IndexError:
            return ""
        if self._sub in text:
            parts = text.split(self._sub)
            text = parts[sub - 1] if sub <= len(parts) else ""
        elif sub != 1:
            return ""
        return text if raw or self._esc not in text else self.unescape(text)

    def components(self, fields: list[str] | None, number: int, rep: int = 1) -> list[str]:
        """The components of one repetition of a field (each its first subcomponent,
        unescaped); [] when the field or repetition is empty. One call where a name or an
        identifier would otherwise be read component by component."""
        if fields is None or number >= len(fields) or not fields[number]:
            return []
        value = fields[number]
        tree = self._tree(value)
        if rep > len(tree) or not tree[rep - 1]:
            return []
        sub, esc = self._sub, self._esc
        return [(c.split(sub, 1)[0] if sub in c else c) if esc not in c else
                self.unescape(c.split(sub, 1)[0]) for c in tree[rep - 1]]

    def _tree(self, value: str) -> list[list[str]]:
        """A composite value split into repetitions of components, once per message: a name
        or an identifier is read component by component. Equal values split equally."""
        tree = self._split.get(value)
        if tree is None:
            tree = self._split[value] = [r.split(self._comp) for r in value.split(self._rep)]
        return tree

    def repetitions(self, fields: list[str] | None, number: int) -> int:
        """How many repetitions a field carries (0 when empty)."""
        if fields is None or number >= len(fields) or not fields[number]:
            return 0
        return len(self._tree(fields[number]))

    def get(self, segment: str, number: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        """A value of the first segment named `segment`."""
        return self.field(self.segment(segment), number, rep, comp, sub)

    def unescape(self, text: str) -> str:
        """Decode HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh..\\)."""
        esc = self.sep.escape
        if esc not in text:
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            end = text.find(esc, i + 1) if ch == esc else -1
            if ch != esc or end < 0:
                out.append(ch)
                i += 1
                continue
            code = text[i + 1:end]
            out.append(self._escape_value(code))
            i = end + 1
        return "".join(out)

    def _escape_value(self, code: str) -> str:
        sep = self.sep
        simple = {"F": sep.field, "S": sep.component, "T": sep.subcomponent,
                  "R": sep.repetition, "E": sep.escape}
        if code in simple:
            return simple[code]
        if code.startswith("X") and len(code) > 1:
            try:
                # \Xhh..\ are bytes in the message's own character set (HL7 v2.5.1 2.7.4).
                return bytes.fromhex(code[1:]).decode(self.codec, "replace")
            except ValueError:
                pass
        if code in {"H", "N"}:  # highlighting on/off: formatting only
            return ""
        return f"{sep.escape}{code}{sep.escape}"  # unknown: keep as sent


def parse(raw: bytes, charset: str | None = None) -> Message:
    """Decode and read a message, or raise Hl7ParseError; `charset` (an MSH-18 value)
    overrides the one the message declares."""
    text, codec = _decoded(raw, charset)
    return Message(text, "utf-8" if codec == "utf-8" else "latin-1")
