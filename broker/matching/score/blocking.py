"""Blocking keys: the indexed values candidate search looks up instead of scanning every patient.

Several keys per patient, so that one error hides no true match: a wrong birth date still meets
its twin record on the name-pair key, a misspelt name on the birth-date key, a name swap on the
keys that do not say which name is which.
"""
from __future__ import annotations

from broker.matching.score.normalize import NamePart, Profile
from broker.matching.score.phonetic import soundex


def _family_codes(part: NamePart) -> set[str]:
    return {soundex(part.joined), soundex(part.core)} if not part.empty else set()


def address_tokens(address: str) -> tuple[str, ...]:
    """The telling words of an address: its postcode (the last number of 4+ digits) and the
    house number with the first word after it (12 HIGH); either may be absent."""
    words = address.split()
    tokens = [w for w in words if w.isdigit() and len(w) >= 4][-1:]
    if len(words) >= 2 and words[0].isdigit() and not words[1].isdigit():
        tokens.append(f"{words[0]} {words[1]}")
    return tuple(tokens)


def block_keys(p: Profile) -> set[str]:
    """The blocking keys of a profile (each at most 96 characters).

    D  birth date                                  survives any name error
    F  family sound + birth year + given initial   survives a wrong day or month, a given typo
    G  given sound + birth year + family initial   survives a family typo or a married name
    P  family and given sounds, in sorted order    survives a missing or wrong birth date, a swap
    Y  family sound + birth year                   survives a wrong given name and day or month
    N  given and family initials + birth year      survives a typo in each name's sound
    A  postcode + birth year                       survives two misspelt names
    H  postcode, or house number and street, + the sound of either name
                                                   survives a wrong or missing birth date, a
                                                   swap, a changed family name
    S  family sound + given initial                survives a missing birth date and a given typo
    T  phone number; I identifier
    Initials are of the nickname-resolved name (Bill and William both give W).
    """
    keys: set[str] = set()
    year = p.birth_date[:4]
    family = _family_codes(p.family)
    given = "" if p.given.empty or p.given.initial else soundex(p.given.canon)
    given_initial = p.given.canon[:1] or "_"
    if p.birth_date:
        keys.add("D" + p.birth_date)
    if year:
        keys.update(f"F{code}{year}{given_initial}" for code in family)
        keys.update(f"Y{code}{year}" for code in family)
        if not p.family.empty:
            keys.add(f"N{given_initial}{p.family.joined[:1]}{year}")
        if given:
            keys.update(f"G{given}{year}{initial}" for initial in {p.family.joined[:1], p.family.core[:1]}
                        if initial)
    tokens = address_tokens(p.address)
    if tokens and year and tokens[0].isdigit():
        keys.add(f"A{tokens[0]}|{year}")
    sounds = family | ({given} if given else set())
    keys.update(f"H{token}|{code}"[:96] for token in tokens for code in sounds)
    keys.update(f"S{code}{given_initial}" for code in family)
    if given:
        keys.update("P" + "".join(sorted((code, given))) for code in family)
    if len(p.phone) >= 7:
        keys.add("T" + p.phone)
    for value, issuer in p.identifiers:
        keys.add(f"I{value}|{issuer}"[:96])
    return keys
