"""The notification machinery of one `broker serve`: triggers, MLLP sender, FHIR writer, PACS
queries."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from broker.config import Settings
from broker.fhir.mapping import load_fhir_mapping
from broker.notify.fhir_deliver import FhirWriter
from broker.notify.fhir_triggers import FhirNotifier
from broker.notify.mllp_out import MllpSender
from broker.notify.pacs_check import Ask
from broker.notify.templates import Templates, load_templates
from broker.notify.triggers import Notifier
from broker.resources import mappings_dir

log = logging.getLogger(__name__)


def site_templates(settings: Settings) -> Templates:
    """The site's notify.toml (in hl7.mappings_dir) or the shipped one, validated."""
    folder = Path(settings.hl7.mappings_dir) if settings.hl7.mappings_dir else None
    return load_templates(folder, mappings_dir())


def fhir_notifier(settings: Settings) -> FhirNotifier | None:
    """The FHIR notifier when [notify] fhir is on and [fhir] base_url set (the site's
    fhir.toml validated now, as the intake reads it), else None."""
    if not settings.notify.fhir:
        return None
    if not settings.fhir.base_url:
        log.warning("notify.fhir is set but [fhir] base_url is empty: nothing is written to FHIR")
        return None
    folder = Path(settings.hl7.mappings_dir) if settings.hl7.mappings_dir else mappings_dir()
    return FhirNotifier(settings.fhir.base_url, load_fhir_mapping(folder / "fhir.toml"))


@dataclass
class NotifyRuntime:
    """Built at start-up (bad templates stop it); the sender's connections close on close()."""
    settings: Settings
    notifier: Notifier = field(init=False)
    _sender: MllpSender | None = field(init=False, default=None)
    _writer: FhirWriter | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.notifier = Notifier(self.settings.notify, site_templates(self.settings),
                                 fhir_notifier(self.settings))
        pacs = self.settings.pacs
        if self.notifier.enabled and self.settings.notify.trigger == "pacs" \
                and not (pacs.host or pacs.qido_url):
            log.warning("notify.trigger is pacs but [pacs] names no host or qido_url: studies "
                        "wait for the PACS's own report (IAN or study-stable) or give up")

    @property
    def sender(self) -> MllpSender:
        """The MLLP sender, started on first use."""
        if self._sender is None:
            self._sender = MllpSender(self.settings.notify.ack_timeout_seconds)
        return self._sender

    @property
    def fhir_writer(self) -> FhirWriter | None:
        """The FHIR writer (its own client: the [fhir] auth and timeouts), or None when FHIR
        notifications are off."""
        if self.notifier.fhir is None:
            return None
        if self._writer is None:
            from broker.fhir.client import FhirClient
            self._writer = FhirWriter(FhirClient(self.settings.fhir))
        return self._writer

    def pacs_ask(self) -> Ask | None:
        """How the PACS check asks the PACS, or None when the trigger does not ask it."""
        pacs = self.settings.pacs
        if self.settings.notify.trigger != "pacs" or not (pacs.qido_url or pacs.host):
            return None
        from broker.dicom.pacs import study_holdings
        return partial(study_holdings, pacs, pacs.calling_ae_title or self.settings.dicom.ae_title)

    def close(self) -> None:
        """Close the MLLP connections."""
        if self._sender is not None:
            self._sender.close()
            self._sender = None
