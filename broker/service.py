"""Composition root of `broker serve`: store, MLLP, DICOM, web and scheduler in one process."""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from broker.admin import create_app
from broker.config import Settings
from broker.dicom.scp import start_dicom_server
from broker.hl7.handlers import build_intake
from broker.hl7.intake import Hl7Intake
from broker.hl7.server import MllpServer
from broker.hl7.writer import IntakeWriter
from broker.jobs import build_scheduler
from broker.metrics import watch_dicom
from broker.notify.runtime import NotifyRuntime
from broker.store.db import read_only_sessions
from broker.store.migrate import upgrade
from broker.store.runtime import connect_store

log = logging.getLogger(__name__)


@dataclass
class Listeners:
    """Bound addresses, known once start() has returned (port 0 picks a free port)."""
    hl7: tuple[str, int] | None = None
    dicom: tuple[str, int] | None = None
    web: tuple[str, int] | None = None

    def described(self) -> list[tuple[str, str]]:
        return [(name, f"{addr[0]}:{addr[1]}") for name, addr in
                (("HL7 MLLP", self.hl7), ("DICOM", self.dicom), ("web", self.web)) if addr]


@dataclass
class Broker:
    """Every listener of the broker, started and stopped together."""
    settings: Settings
    engine: Engine = field(init=False)
    sessions: sessionmaker[Session] = field(init=False)
    listeners: Listeners = field(default_factory=Listeners)

    def __post_init__(self) -> None:
        store = connect_store(self.settings)
        self.engine, self.sessions = store.engine, store.sessions
        self._stop_callbacks: list = []
        self.mllp_server: MllpServer | None = None
        self._migrated = False
        self.intake = build_intake(self.settings, self.sessions)
        self.notify = NotifyRuntime(self.settings)  # validates mappings/notify.toml now
        self.fhir = None  # broker.fhir.sync.FhirSync when [fhir] base_url is set

    def migrate(self) -> None:
        """Bring the schema to the newest revision (once per Broker)."""
        if not self._migrated:
            upgrade(self.engine)
            self._migrated = True

    def start(self) -> Listeners:
        """Migrate the store, then open every enabled listener."""
        self.migrate()
        if self.settings.hl7.enabled:
            self._start_mllp(self.intake)
        if self.settings.dicom.enabled:
            # Worklist queries only read: on SQLite they never queue behind a writer.
            server = start_dicom_server(self.settings.dicom, self.settings.worklist, self.sessions,
                                        mpps_settings=self.settings.mpps,
                                        find_sessions=read_only_sessions(self.engine),
                                        notifier=self.notify.notifier)
            self.listeners.dicom = server.server_address[:2]
            watch_dicom(server)  # C-FIND and MPPS counts and latency for /metrics
            self._stop_callbacks.append(server.shutdown)
        if self.settings.fhir.base_url:
            self._build_fhir()
        if self.settings.web.enabled:
            self._start_web()
        if self.fhir is not None:
            self._start_fhir()
        scheduler = build_scheduler(self.settings, self.engine, self.sessions, fhir=self.fhir,
                                    notify=self.notify)
        scheduler.start()
        self._stop_callbacks.append(self.notify.close)
        self._stop_callbacks.append(lambda: scheduler.shutdown(wait=False))
        for name, address in self.listeners.described():
            log.info("%s listening on %s", name, address)
        return self.listeners

    def stop(self) -> None:
        """Close listeners in reverse order of opening; safe to call twice."""
        while self._stop_callbacks:
            callback = self._stop_callbacks.pop()
            try:
                callback()
            except Exception:  # noqa: BLE001 - keep closing the rest
                log.exception("error while stopping")
        self.engine.dispose()

    def _start_mllp(self, intake: Hl7Intake) -> None:
        # The listener's event loop frames and answers; the writer thread stores.
        writer = IntakeWriter(intake, self.settings.hl7.max_group).start()
        server = MllpServer(writer.store, self.settings.hl7)
        self.mllp_server = server
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="mllp", daemon=True)
        thread.start()
        self.listeners.hl7 = asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)

        def stop() -> None:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
            writer.stop()  # stores what the closed connections had sent
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        self._stop_callbacks.append(stop)

    def _build_fhir(self) -> None:
        from broker.fhir.sync import FhirSync
        self.fhir = FhirSync(self.settings, self.engine, self.sessions)  # mappings validated now

    def _start_fhir(self) -> None:
        from broker.fhir.sync import callback_url
        self.fhir.keeper.callback = callback_url(self.settings, self.listeners.web)
        self.fhir.start()
        self._stop_callbacks.append(self.fhir.stop)

    def _start_web(self) -> None:
        from broker.admin import register_public_blueprint
        from broker.admin.server import WebServer, secret_key
        tls = bool(self.settings.web.tls_cert_file)
        app = create_app(self.sessions, {
            "BROKER_SETTINGS": self.settings, "BROKER_INTAKE": self.intake,
            "SECRET_KEY": secret_key(self.settings), "SESSION_COOKIE_SECURE": tls})
        # The PACS's stable-study hook checks its own shared secret, not a login.
        from broker.notify import http as notify_http
        register_public_blueprint(app, notify_http.bp)
        app.extensions["broker.notify"] = self.notify
        if self.fhir is not None:
            from broker.fhir.endpoint import bp as fhir_notify
            # The FHIR server authenticates with the subscription's shared secret, not a login.
            register_public_blueprint(app, fhir_notify)
            app.extensions["broker.fhir"] = self.fhir
        server = WebServer(app, self.settings)
        self.listeners.web = server.start()
        app.config["BROKER_LISTENERS"] = self.listeners.described()
        self._stop_callbacks.append(server.stop)
