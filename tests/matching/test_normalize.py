"""Normalisation rules, one row per thing registrations get wrong."""
import pytest

from broker.matching.score.normalize import birth_date, fold, name_part, phone, sex
from broker.matching.score.phonetic import soundex


@pytest.mark.parametrize("raw, folded", [
    ("Müller", "MULLER"),
    ("  o'neil ", "O NEIL"),
    ("Al-Rashid", "AL RASHID"),
    ("Søren Ørsted", "SOREN ORSTED"),
    ("Straße", "STRASSE"),
    ("Łukasz", "LUKASZ"),
    ("José  María", "JOSE MARIA"),
    ("", ""),
])
def test_fold(raw, folded):
    assert fold(raw) == folded


@pytest.mark.parametrize("a, b", [
    ("Müller", "Mueller"),          # umlaut and its transliteration
    ("Müller", "MULLER"),           # umlaut dropped, case
    ("Al-Rashid", "Alrashid"),      # hyphen
    ("Al-Rashid", "Al Rashid"),     # space
    ("van der Berg", "Vanderberg"),
    ("O'Neill", "ONeill"),
    ("Dr. Smith", "smith"),         # title
])
def test_same_joined_family_name(a, b):
    assert name_part(a).joined == name_part(b).joined


@pytest.mark.parametrize("raw", ["UNKNOWN", "Unknown", "Not Known", "NN", "Trauma", "xxx"])
def test_placeholder_names_are_missing(raw):
    assert name_part(raw).empty


@pytest.mark.parametrize("raw, core", [
    ("van der Berg", "BERG"),
    ("de la Cruz", "CRUZ"),
    ("Al-Rashid", "RASHID"),
    ("Smith", "SMITH"),
    ("Van", "VAN"),  # a particle alone is the name
])
def test_particles_are_dropped_from_core(raw, core):
    assert name_part(raw).core == core


@pytest.mark.parametrize("given, canon", [
    ("Bill", "WILLIAM"), ("Bob", "ROBERT"), ("Joe", "JOSEPH"), ("Liz", "ELIZABETH"),
    ("Mohamed", "MOHAMMED"), ("Juergen", "JURGEN"), ("Ingrid", "INGRID"),
])
def test_nicknames_resolve(given, canon):
    assert name_part(given).canon == canon


@pytest.mark.parametrize("given, initial", [("M.", True), ("M", True), ("Mo", False), ("", False)])
def test_initials(given, initial):
    assert name_part(given).initial is initial


@pytest.mark.parametrize("raw, value", [
    ("19720304", "19720304"), ("1972-03-04", "19720304"), ("1972-03-04T10:00", "19720304"),
    ("19721304", ""), ("19720230", ""), ("1972", ""), ("", ""),
])
def test_birth_date(raw, value):
    assert birth_date(raw) == value


@pytest.mark.parametrize("raw, value", [("M", "M"), ("f", "F"), ("U", ""), ("O", ""), ("", "")])
def test_sex_unknown_is_no_evidence(raw, value):
    assert sex(raw) == value


@pytest.mark.parametrize("raw, value", [
    ("+46-18-555 1234", "185551234"), ("018 555 1234", "185551234"), ("", ""),
])
def test_phone_keeps_subscriber_digits(raw, value):
    assert phone(raw) == value


@pytest.mark.parametrize("word, code", [
    ("ROBERT", "R163"), ("RUPERT", "R163"), ("ASHCRAFT", "A261"), ("TYMCZAK", "T522"),
    ("PFISTER", "P236"), ("MULLER", "M460"), ("MUELLER", "M460"), ("LEE", "L000"), ("", ""),
])
def test_soundex(word, code):
    assert soundex(word) == code
