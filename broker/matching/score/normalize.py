"""Normalisation of what registrations get wrong: case, diacritics, punctuation, particles.

Everything here is pure: strings in, folded strings and small frozen records out.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from datetime import date

from broker.matching.score.nicknames import canonical_given

# Letters NFKD does not decompose into a base letter plus a combining mark.
_SPECIAL = str.maketrans({
    "ß": "SS", "ẞ": "SS", "Æ": "AE", "æ": "AE", "Ø": "O", "ø": "O", "Œ": "OE", "œ": "OE",
    "Ł": "L", "ł": "L", "Đ": "D", "đ": "D", "Þ": "TH", "þ": "TH", "ı": "I", "Ð": "D", "ð": "D",
})
_NON_ALNUM = re.compile(r"[^A-Z0-9]+")
# German transliterations of umlauts (Mueller for Müller): folded to the plain vowel on both sides.
_UMLAUT_DIGRAPH = re.compile(r"(?<=[A-Z])([AOU])E")
# Particles of family names (van der Berg, Al-Rashid, de la Cruz, Mac/Mc are kept: they are spelt).
PARTICLES = frozenset({
    "VAN", "VON", "DER", "DEN", "DE", "DA", "DI", "DO", "DOS", "DAS", "DEL", "DELLA", "DELA", "LA",
    "LE", "DU", "TER", "TEN", "AL", "EL", "BIN", "BEN", "IBN", "ABU", "Y", "ST", "SAINT",
})
# Titles and suffixes that are not part of the name itself.
TITLES = frozenset({"MR", "MRS", "MS", "MISS", "DR", "PROF", "SIR", "JR", "SR", "II", "III", "IV"})


def fold(text: str) -> str:
    """Upper-case ASCII letters and digits, single-spaced: diacritics and punctuation removed."""
    text = unicodedata.normalize("NFKD", (text or "").translate(_SPECIAL))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).upper()
    return _NON_ALNUM.sub(" ", text).strip()


# Names given to a patient whose name is not known yet (emergency and trauma registration,
# IHE RAD TF-1 Patient Information Reconciliation): no evidence either way.
PLACEHOLDERS = frozenset({
    "UNKNOWN", "UNK", "UNBEKANNT", "INCONNU", "DESCONOCIDO", "ANONYMOUS", "ANONYM", "NN", "XX",
    "XXX", "TRAUMA", "NOTKNOWN", "NONAME", "NOTSTATED",
})


def raw_tokens(text: str) -> tuple[str, ...]:
    """Folded name words without titles; hyphens and apostrophes split words (Al-Rashid, O'Neil)."""
    return tuple(w for w in fold(text).split() if not w.isdigit() and w not in TITLES)


@dataclass(frozen=True)
class NamePart:
    """One name (family or given) in every form the comparisons need."""
    tokens: tuple[str, ...] = ()
    joined: str = ""    # all words run together: AL RASHID, AL-RASHID, ALRASHID -> ALRASHID
    core: str = ""      # without particles: VAN DER BERG -> BERG
    first: str = ""     # first word (the call name of a given name)
    canon: str = ""     # first word with its nickname resolved (BILL -> WILLIAM)
    spelt: str = ""     # first word as spelt, before umlaut reduction (a typo is judged on it)

    @property
    def empty(self) -> bool:
        return not self.joined

    @property
    def initial(self) -> bool:
        """True when the name is only an initial (M. for Mohammed)."""
        return len(self.joined) == 1


# Names repeat (a family, the common given names): a candidate search normalises the same
# few strings over and over, and a NamePart is immutable, so one can be shared.
@lru_cache(maxsize=65536)
def name_part(text: str) -> NamePart:
    """The comparison forms of one name field."""
    raw = raw_tokens(text)
    if not raw or "".join(raw) in PLACEHOLDERS:
        return NamePart()
    tokens = tuple(_UMLAUT_DIGRAPH.sub(r"\1", w) for w in raw)
    core_tokens = [t for t in tokens if t not in PARTICLES] or list(tokens)
    first = tokens[0]
    # Nicknames are looked up as spelt (JOE), then transliteration-reduced (JURGEN for JUERGEN).
    canon = canonical_given(raw[0]) if canonical_given(raw[0]) != raw[0] else canonical_given(first)
    return NamePart(tokens, "".join(tokens), "".join(core_tokens), first, canon, raw[0])


def birth_date(text: str) -> str:
    """YYYYMMDD from YYYYMMDD or ISO YYYY-MM-DD (time part ignored); "" when absent or invalid."""
    digits = re.sub(r"[^0-9]", "", (text or "")[:10])
    if len(digits) < 8:
        return ""
    digits = digits[:8]
    try:
        date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return ""
    return digits


def sex(text: str) -> str:
    """M or F; anything else (O, U, empty) is unknown and compares as no evidence."""
    value = fold(text)[:1]
    return value if value in ("M", "F") else ""


def phone(text: str) -> str:
    """The last nine digits: the subscriber number without country and trunk prefixes."""
    return re.sub(r"[^0-9]", "", text or "")[-9:]


def address(text: str) -> str:
    """Folded address words."""
    return fold(text)


@dataclass(frozen=True)
class Profile:
    """A patient's demographics, normalised once, ready to block and compare."""
    family: NamePart = NamePart()
    given: NamePart = NamePart()
    birth_date: str = ""
    sex: str = ""
    address: str = ""
    phone: str = ""
    identifiers: frozenset[tuple[str, str]] = frozenset()  # (value, ISSUER upper-case)


def profile(family: str = "", given: str = "", birth: str = "", sex_code: str = "",
            address_text: str = "", phone_text: str = "",
            identifiers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = ()) -> Profile:
    """Normalise raw demographics into a Profile."""
    return Profile(
        family=name_part(family), given=name_part(given), birth_date=birth_date(birth),
        sex=sex(sex_code), address=address(address_text), phone=phone(phone_text),
        identifiers=frozenset((v.strip(), (i or "").strip().upper()) for v, i in identifiers if v))
