"""The admin's flows in real headless Chromium against a running broker: sign-in, lockout,
the match queue (link, dismiss, unmerge), reprocessing, the mapping bench, roles, CSRF and
escaping. HL7 goes in over MLLP; the worklist is read back with DCMTK's findscu."""
from __future__ import annotations

import re
from datetime import date
from itertools import count

from sqlalchemy import func, select

from broker.matching.review import link_match
from broker.matching.searches import run_pending_searches
from broker.store.models import InboundMessage, MatchCandidate, Order, Patient, PatientIdentifier
from tests.support.dcmtk import findscu
from tests.support.hl7client import send_and_read_ack
from tests.web.conftest import sign_in

TODAY = date.today().strftime("%Y%m%d")
_ids = count(1)


def order_message(pid: str, name: str, accession: str, control: str = "NW",
                  placer: str | None = None, birth: str = "19720315", sex: str = "F") -> bytes:
    """An ORM^O01 for today with this PID-3 and PID-5 (address and phone kept alike)."""
    n = next(_ids)
    placer = placer or f"P{accession}"
    return "\r".join([
        f"MSH|^~\\&|EHR|HOSP|BROKER|RAD|{TODAY}0800||ORM^O01|WEB{n:04d}{accession}|P|2.3.1",
        f"PID|1||{pid}^MR||{name}||{birth}|{sex}|||7 Elm Road^^Springfield^IL^62704||555-0199",
        "PV1|1|O|RAD^^^HOSP",
        f"ORC|{control}|{placer}^EHR|||||^^^{TODAY}1100^^R",
        f"OBR|1|{placer}^EHR||CTHEAD^CT head^L||||||||||||||{accession}|RP{accession}|"
        f"SPS{accession}||||CT",
    ]).encode()


def send(broker, raw: bytes) -> str:
    return send_and_read_ack(broker.listeners.hl7[1], raw).get("MSA", 1)


def queue_typo_pair(broker, family: str, accession: str) -> int:
    """A patient, then the same person from a clinic with a swapped letter: the queue entry."""
    assert send(broker, order_message(f"H{accession}^^^HOSP", f"{family}^Anna^M", f"{accession}A")) == "AA"
    assert send(broker, order_message(f"C{accession}^^^CLINIC", f"{family}^Anan", accession)) == "AA"
    run_pending_searches(broker.sessions, broker.settings.matching)  # the job's work, after the ACK
    with broker.sessions() as session:
        incoming = session.scalar(select(PatientIdentifier.patient_id)
                                  .where(PatientIdentifier.value == f"C{accession}"))
        return session.scalar(select(MatchCandidate.id)
                              .where(MatchCandidate.incoming_patient_id == incoming))


def worklist_patient(broker, accession: str) -> list[tuple[str, str]]:
    items = findscu(broker.listeners.dicom[1], [f"AccessionNumber={accession}", "PatientID",
                                                "PatientName"])
    return [(i.PatientID, str(i.PatientName)) for i in items]


def flash(page) -> str:
    return page.locator(".flash").first.inner_text()


def test_sign_in_and_sign_out(page):
    page.goto("/")
    assert page.url.endswith("/login?next=/")
    sign_in(page, "admin")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    page.get_by_role("button", name="Sign out").click()
    assert "/login" in page.url and "Signed out." in flash(page)
    page.goto("/matches")
    assert "/login" in page.url


def test_wrong_password_then_lockout(page):
    sign_in(page, "locky", "not the password")
    assert "wrong username or password" in flash(page)
    for _ in range(4):  # [web] max_failed_logins = 5
        sign_in(page, "locky", "not the password")
    assert "locked" in flash(page)
    sign_in(page, "locky")  # the right password, but the account is locked
    assert "locked" in flash(page) and "/login" in page.url


def test_a_typo_from_hl7_is_linked_in_the_queue_and_served_under_the_survivor(page, running):
    match_id = queue_typo_pair(running, "Kowalski", "ACCK1")
    assert worklist_patient(running, "ACCK1") == [("CACCK1", "Kowalski^Anan")]
    sign_in(page, "admin")
    page.get_by_role("link", name="Match queue").click()
    entry = page.locator(f"#match-{match_id}")
    assert "one letter differs" in entry.inner_text() and "Anan" in entry.inner_text()
    entry.get_by_role("button", name="Link").click()
    page.get_by_role("button", name="Confirm").click()
    assert f"Match #{match_id} linked" in flash(page)
    assert worklist_patient(running, "ACCK1") == [("HACCK1", "Kowalski^Anna^M")]


def test_dismiss_keeps_two_people_apart(page, running):
    match_id = queue_typo_pair(running, "Lindqvist", "ACCL1")
    sign_in(page, "admin")
    page.goto("/matches")
    page.locator(f"#match-{match_id}").get_by_role("button", name="Dismiss").click()
    assert f"Match #{match_id} dismissed" in flash(page)
    page.get_by_role("link", name="Dismissed").click()
    assert "resolved by admin" in page.locator(f"#match-{match_id}").inner_text()
    assert worklist_patient(running, "ACCL1") == [("CACCL1", "Lindqvist^Anan")]


def test_unmerge_from_the_patient_page(page, running):
    match_id = queue_typo_pair(running, "Moreau", "ACCM1")
    with running.sessions.begin() as session:
        merge = link_match(session, match_id, "someone")
        merged_id = merge.merged_id
    assert worklist_patient(running, "ACCM1") == [("HACCM1", "Moreau^Anna^M")]
    sign_in(page, "admin")
    page.goto(f"/patients/{merged_id}")
    page.get_by_role("button", name="Unmerge").click()
    assert "separate" in flash(page)
    assert worklist_patient(running, "ACCM1") == [("CACCM1", "Moreau^Anan")]


def test_reprocess_a_failed_message(page, running):
    change = order_message("R1^^^HOSP", "Rossi^Marco", "ACCR1", control="XO", birth="19600101",
                           sex="M")
    assert send(running, change) == "AE"  # the change came before its order
    assert send(running, order_message("R1^^^HOSP", "Rossi^Marco", "ACCR1", birth="19600101",
                                       sex="M")) == "AA"
    with running.sessions() as session:
        failed = session.scalar(select(InboundMessage.id).where(InboundMessage.status == "FAILED",
                                                                InboundMessage.control_id.like("%ACCR1")))
    sign_in(page, "admin")
    page.goto("/messages?status=FAILED")
    page.get_by_role("link", name=str(failed), exact=True).click()
    assert "is not known" in page.inner_text("main") and "PID-5" in page.inner_text("main")
    page.get_by_role("button", name="Reprocess").click()
    assert f"Message #{failed} reprocessed: PROCESSED" in flash(page)
    assert page.locator("h1 .status").inner_text() == "PROCESSED"


def test_the_mapping_bench_shows_attributes_and_stores_nothing(page, running):
    with running.sessions() as session:
        before = session.scalar(select(func.count()).select_from(Order))
    sign_in(page, "admin")
    page.get_by_role("link", name="Mapping bench").click()
    text = order_message("B1^^^HOSP", "Bench^Betty", "ACCB1").decode().replace("\r", "\n")
    page.get_by_label("HL7 message").fill(text)
    page.get_by_role("button", name="Try it").click()
    result = page.locator(".bench-result").inner_text()
    assert "1 worklist item" in result
    assert re.search(r"AccessionNumber\s+ACCB1\s+OBR-18 \(hl7_fields\.toml:\d+\)", result)
    assert "Bench^Betty" in result and "ScheduledStationAETitle" in result
    page.get_by_label("HL7 message").fill(text.replace("ORC|NW", "ORC|ZZ"))
    page.get_by_role("button", name="Try it").click()
    assert "order control 'ZZ' is not supported" in page.locator(".bench-result").inner_text()
    with running.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == before


def test_a_viewer_is_refused_an_admin_action(page, running):
    match_id = queue_typo_pair(running, "Novak", "ACCN1")
    sign_in(page, "viewer")
    page.goto("/matches")
    assert page.locator(f"#match-{match_id}").is_visible()
    assert page.get_by_role("button", name="Link").count() == 0
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = page.request.post(f"/matches/{match_id}/dismiss", form={"csrf_token": token})
    assert refused.status == 403
    page.goto(f"/matches/{match_id}/link")
    assert "needs the admin role" in page.inner_text("main")
    with running.sessions() as session:
        assert session.get(MatchCandidate, match_id).status == "OPEN"


def test_a_post_without_csrf_token_is_refused(page, running):
    match_id = queue_typo_pair(running, "Okoye", "ACCO1")
    sign_in(page, "admin")
    refused = page.request.post(f"/matches/{match_id}/dismiss")
    assert refused.status == 400 and "CSRF" in refused.text()
    with running.sessions() as session:
        assert session.get(MatchCandidate, match_id).status == "OPEN"


def test_a_script_in_a_patient_name_is_shown_as_text(page, running):
    name = "<script>document.title='pwned'</script>^Eve"
    assert send(running, order_message("S1^^^HOSP", name, "ACCS1")) == "AA"
    with running.sessions() as session:
        patient_id = session.scalar(select(PatientIdentifier.patient_id)
                                    .where(PatientIdentifier.value == "S1"))
    sign_in(page, "admin")
    page.goto(f"/patients/{patient_id}")
    assert "<script>document.title='pwned'</script>" in page.locator("h1").inner_text()
    assert page.title() != "pwned"
    page.goto("/worklist")
    assert page.get_by_text("<script>document.title='pwned'</script>", exact=False).count() >= 1
    assert page.title() != "pwned"
    with running.sessions() as session:
        assert session.get(Patient, patient_id).family_name.startswith("<script>")
