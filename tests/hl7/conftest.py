"""Fixtures shared by the HL7 tests."""
from __future__ import annotations

import pytest

from broker.clock import uid_factory
from broker.hl7.handlers import HANDLERS
from broker.hl7.intake import Hl7Intake, IntakeContext
from broker.mapping.site import load_site_mappings
from broker.resources import mappings_dir

MAPPINGS = load_site_mappings(mappings_dir())


@pytest.fixture
def intake(sessions) -> Hl7Intake:
    """The intake with the shipped mappings, on the parametrised test database."""
    return Hl7Intake(sessions, IntakeContext(mappings=MAPPINGS, new_uid=uid_factory("1.2.3.")),
                     HANDLERS)
