"""American Soundex (as in the US Census indexing rules): a coarse key that survives typos.

Chosen for blocking because it is stable under the commonest registration errors: vowel
changes (Smith/Smyth), doubled letters (Muller/Mueller/Müller after folding) and H/W between
consonants.
"""
from __future__ import annotations

_CODES = {**dict.fromkeys("BFPV", "1"), **dict.fromkeys("CGJKQSXZ", "2"),
          **dict.fromkeys("DT", "3"), "L": "4", **dict.fromkeys("MN", "5"), "R": "6"}


def soundex(word: str) -> str:
    """The four-character Soundex code of an upper-case ASCII word ("" for no letters)."""
    letters = [c for c in word if "A" <= c <= "Z"]
    if not letters:
        return ""
    head = letters[0]
    code = [head]
    previous = _CODES.get(head, "")
    for ch in letters[1:]:
        digit = _CODES.get(ch, "")
        if digit and digit != previous:
            code.append(digit)
            if len(code) == 4:
                break
        if ch not in "HW":  # H and W do not separate letters with the same code
            previous = digit
    return "".join(code).ljust(4, "0")
