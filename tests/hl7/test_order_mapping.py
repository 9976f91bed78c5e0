"""Order and patient mapping without sockets: Study UID policy, PID-3 issuer choice, settings."""
from __future__ import annotations

import pytest

from broker.config import ConfigError, load_settings
from broker.hl7.fields import FieldError
from broker.hl7.message import parse
from broker.hl7.orders import OrderPolicy, order_groups, read_orders, read_patient
from broker.mapping.site import load_site_mappings
from broker.resources import mappings_dir

MAPPINGS = load_site_mappings(mappings_dir())
ORM = ("MSH|^~\\&|EHR|HOSP|BROKER|RAD|20261123080000||ORM^O01|C1|P|2.3.1\r"
       "PID|1||{pid3}||Doe^Jane||19800101|F\r"
       "ORC|NW|P1^EHR|||||^^^202611241000^^R\r"
       "OBR|1|P1^EHR||CTHEAD^CT head^L||||||||||||||{acc}|RP1|SPS1||||CT{zds}")


def _orders(policy: OrderPolicy, acc: str = "ACC1", zds: str = ""):
    msg = parse(ORM.format(pid3="1^^^HOSP", acc=acc, zds=zds).encode())
    return read_orders(msg, order_groups(msg), MAPPINGS, policy)


@pytest.mark.parametrize("policy, zds, acc, expected", [
    ("generate", "", "ACC1", ""),                                  # the store asks the factory
    ("generate", "\rZDS|1.2.3.4^X", "ACC1", "1.2.3.4"),            # sent: always kept
    ("reject", "\rZDS|1.2.3.4^X", "ACC1", "1.2.3.4"),
    ("accession", "", "ACC1", "same"),                             # derived, deterministic
    ("reject", "", "ACC1", FieldError),
    ("accession", "", "", FieldError),                             # nothing to derive from
])
def test_missing_study_uid_policy(policy, zds, acc, expected):
    rule = OrderPolicy(study_uid_policy=policy, uid_root="1.2.999")
    if expected is FieldError:
        with pytest.raises(FieldError, match="Study Instance UID"):
            _orders(rule, acc, zds)
        return
    uid = _orders(rule, acc, zds)[0][1].procedures[0].study_instance_uid
    if expected == "same":
        assert uid.startswith("1.2.999.") and len(uid) <= 64
        assert uid == _orders(rule, acc, zds)[0][1].procedures[0].study_instance_uid
        assert uid != _orders(rule, "ACC2", zds)[0][1].procedures[0].study_instance_uid
    else:
        assert uid == expected


@pytest.mark.parametrize("pid3, issuer, default, expected", [
    ("1^^^A~2^^^B", "", "", [("1", "A"), ("2", "B")]),
    ("1^^^A~2^^^B", "B", "", [("2", "B"), ("1", "A")]),
    ("1^^^A~2^^^B", "C", "", [("1", "A"), ("2", "B")]),    # configured issuer absent: first
    ("1~2^^^B", "", "HOSP", [("1", "HOSP"), ("2", "B")]),  # default assigning authority
    ("1^^^A&1.2.3&ISO", "A", "", [("1", "A")]),            # HD namespace of PID-3.4
])
def test_pid3_repetitions(pid3, issuer, default, expected):
    msg = parse(ORM.format(pid3=pid3, acc="A", zds="").encode())
    record = read_patient(msg, issuer, default)
    assert [(i.value, i.issuer) for i in record.identifiers] == expected


@pytest.mark.parametrize("env, words", [
    ({"BROKER_HL7_STUDY_UID_POLICY": "invent"}, "study_uid_policy"),
    ({"BROKER_HL7_ALLOWED_PEERS": "10.0.0.0/8,not-an-ip"}, "allowed_peers"),
    ({"BROKER_HL7_TLS_KEY_FILE": "/k.pem"}, "tls_cert_file"),
    ({"BROKER_HL7_MAX_GROUP": "0"}, "max_group"),
])
def test_hl7_settings_are_validated(env, words):
    with pytest.raises(ConfigError, match=words):
        load_settings(path=None, environ=env, default_file=None)


OMI = ("MSH|^~\\&|AGFA|WEST|BROKER|RAD|20261123080000||OMI^O23^OMI_O23|W1|P|2.5.1\r"
       "PID|1||W1^^^WEST^MR||Doe^Jane||19800101|F\r"
       "ORC|NW|P9^AGFA|||SC\r"
       "TQ1|1||||||{start}|{end}|R\r"
       "OBR|1|P9^AGFA||{code}^Procedure^L|||||||||||||||||||||||||||||||||||||||{code}^Procedure^L\r"
       "IPC|ACC9|RP9|1.2.3.9|SPS9|CT")


def _steps(raw: str):
    msg = parse(raw.encode())
    [(_, order)] = read_orders(msg, order_groups(msg), MAPPINGS, OrderPolicy())
    return [s for p in order.procedures for s in p.steps]


@pytest.mark.parametrize("start, end, code, expected", [
    ("202611241230", "", "CTCHEST", "2026-11-24 12:50"),            # procedures.toml: 20 minutes
    ("202611241230", "202611241315", "CTCHEST", "2026-11-24 13:15"),  # TQ1-8 wins
    ("202611241230", "20261124131500", "UNKNOWN", "2026-11-24 13:15"),  # sent, no table entry
    ("202611241230", "", "UNKNOWN", None),                          # no duration: no end
    ("", "", "CTCHEST", None),                                      # no start: nothing to add to
    ("202611241230", "202611241200", "CTCHEST", "2026-11-24 12:50"),  # end before start: duration
])
def test_v251_step_end_from_tq1_8_or_procedure_duration(start, end, code, expected):
    [step] = _steps(OMI.format(start=start, end=end, code=code))
    assert (step.end.strftime("%Y-%m-%d %H:%M") if step.end else None) == expected


@pytest.mark.parametrize("orc7, code, expected", [
    ("^^^202611241000^^R", "CTHEAD", "2026-11-24 10:15"),                 # 15 minutes
    ("^^^202611241000^202611241040^R", "CTHEAD", "2026-11-24 10:40"),     # ORC-7.5 wins
    ("^^^202611241000^^R", "NOSUCH", None),
])
def test_v231_step_end_from_orc_7_5_or_procedure_duration(orc7, code, expected):
    raw = ORM.format(pid3="1^^^HOSP", acc="ACC1", zds="").replace(
        "^^^202611241000^^R", orc7).replace("CTHEAD^CT head", f"{code}^CT head")
    [step] = _steps(raw)
    assert step.start.strftime("%H:%M") == "10:00"
    assert (step.end.strftime("%Y-%m-%d %H:%M") if step.end else None) == expected


def test_malformed_tq1_8_is_refused_naming_the_field():
    with pytest.raises(FieldError, match="TQ1-8"):
        _steps(OMI.format(start="202611241230", end="20261199", code="CTCHEST"))


def test_reading_plans_follow_the_sender_and_the_mapping_set(tmp_path):
    """Plans are resolved once per (mappings, version, sender): a sender's override, another
    sender of the same version and a second mapping set each read their own addresses."""
    import shutil
    folder = tmp_path / "mappings"
    shutil.copytree(mappings_dir(), folder)
    (folder / "senders.toml").write_text('[senders."OTHER".fields]\naccession_number = ["OBR-20"]\n')
    edited = load_site_mappings(folder)

    def accession(mappings, app: str) -> str:
        msg = parse(ORM.format(pid3="1^^^HOSP", acc="ACC1", zds="").replace("|EHR|", f"|{app}|", 1)
                    .encode())
        return read_orders(msg, order_groups(msg), mappings, OrderPolicy())[0][1].accession_number

    assert accession(MAPPINGS, "EHR") == "ACC1"
    assert accession(edited, "OTHER") == "SPS1"     # the override: OBR-20
    assert accession(edited, "EHR") == "ACC1"       # same mapping set, no override
    assert accession(MAPPINGS, "OTHER") == "ACC1"   # the shipped set has no such override
