"""One settings object, read from a TOML file and BROKER_<SECTION>_<KEY> environment variables.

Nothing else in the broker reads the environment: the CLI builds a Settings and passes it down.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, get_type_hints

DEFAULT_CONFIG_FILE = Path("broker.toml")
DEFAULT_DATA_DIR = Path("broker-data")


class ConfigError(ValueError):
    """A setting is missing, unknown or has a wrong value; the message names the key."""


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""  # empty: SQLite (WAL) at <data_dir>/broker.db
    echo: bool = False


@dataclass(frozen=True)
class Hl7Settings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2575
    max_message_bytes: int = 1024 * 1024
    idle_timeout_seconds: float = 300.0
    max_connections: int = 64
    # Assigning authority (PID-3.4) whose identifier becomes the patient ID; empty: the first one.
    patient_id_issuer: str = ""
    # TLS: server certificate and key (PEM); with a CA file, client certificates are required.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    # Peer addresses or networks (CIDR) allowed to connect; empty list: any.
    allowed_peers: tuple[str, ...] = ()
    # Senders allowed, as "MSH-3" or "MSH-3|MSH-4"; others are stored and answered AR.
    allowed_senders: tuple[str, ...] = ()
    # Order without a Study Instance UID: "generate" (under uid.root), "accession", "reject".
    study_uid_policy: str = "generate"
    # Folder of the site's mapping files; empty: the shipped mappings/.
    mappings_dir: str = ""
    # Most messages committed in one transaction by the intake writer (group commit).
    max_group: int = 64


@dataclass(frozen=True)
class DicomSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = "BROKER"
    # Established associations served at once; a department's scanners and modalities fit.
    max_associations: int = 64
    # Seconds a connection may take to send its A-ASSOCIATE-RQ (the ARTIM timer, PS3.8 9.1.4)
    # before it is closed; a port scan or a silent peer never holds a slot longer.
    acse_timeout_seconds: float = 5.0
    # Connections still negotiating (or being closed) on top of max_associations; past both,
    # new associations are refused until those end (within acse_timeout_seconds).
    max_pending_connections: int = 256
    # Calling AE titles allowed to associate; empty list: any.
    allowed_calling_ae_titles: tuple[str, ...] = ()
    # Peer IP addresses allowed to connect; empty list: any.
    allowed_calling_addresses: tuple[str, ...] = ()
    # TLS (PS3.15 B.1): serve DICOM over TLS when a certificate and key are given.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # CA bundle that client certificates must chain to; empty: no client certificate asked.
    tls_ca_file: str = ""


@dataclass(frozen=True)
class WebSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    # TLS: serve the UI over HTTPS with this certificate and key (PEM); cookies become Secure.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Signs session cookies; empty: a random key kept in <data_dir>/web-secret.key (made once).
    secret_key_file: str = ""
    # Consecutive failed sign-ins that lock an account, and for how long.
    max_failed_logins: int = 5
    lockout_minutes: float = 15.0
    # Failed sign-ins one client address may make per minute before it is refused (429).
    failed_logins_per_minute: int = 10
    session_hours: float = 12.0
    threads: int = 8


@dataclass(frozen=True)
class WorklistSettings:
    # Step statuses the Modality Worklist offers.
    served_statuses: tuple[str, ...] = ("SCHEDULED", "ARRIVED", "READY")
    # Maximum number of C-FIND matches per query; 0: no limit.
    max_results: int = 0
    # Match PN keys case-insensitively (PS3.4 C.2.2.2.1 leaves this to the SCP).
    case_insensitive_names: bool = True
    # Housekeeping. Cancel steps still SCHEDULED this many days after their start;
    # 0: never (opt-in).
    auto_cancel_after_days: int = 0
    # Delete finished orders (completed, discontinued, canceled) and their performed steps this
    # many days after they finished; 0: keep for ever (opt-in).
    purge_after_days: int = 0
    housekeeping_interval_minutes: float = 60.0
    # Date window around today served to every query; -1: no limit (no hidden filter).
    days_behind: int = -1
    days_ahead: int = -1
    # Per-calling-AE narrowing of empty keys, e.g. "CT1: station=CT1 modality=CT" (see dicom/rules.py).
    calling_ae_rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class MppsSettings:
    # DICOM peers (a PACS, a RIS) every MPPS N-CREATE/N-SET is forwarded to, as AE@host:port.
    forward_to: tuple[str, ...] = ()
    forward_calling_ae_title: str = "BROKER"
    forward_interval_seconds: float = 10.0
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    max_attempts: int = 0  # 0: retry until delivered


@dataclass(frozen=True)
class PacsSettings:
    # The PACS's query SCP, asked (C-FIND STUDY/SERIES level) whether a study's images are in.
    ae_title: str = ""
    host: str = ""
    port: int = 0
    qido_url: str = ""  # DICOMweb QIDO-RS base (e.g. http://pacs:8042/dicom-web) instead of C-FIND
    calling_ae_title: str = ""  # empty: dicom.ae_title
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class NotifySettings:
    # MLLP destinations "host:port" that get order status and study availability; empty: none.
    hl7_to: tuple[str, ...] = ()
    # When a study counts as available: mpps (final MPPS COMPLETED), pacs (MPPS COMPLETED and
    # the PACS holds its instances), ian (an Instance Availability Notification, IHE RAD-49).
    trigger: str = "pacs"
    fhir: bool = False  # write ImagingStudy / ServiceRequest status to [fhir] base_url
    interval_seconds: float = 0.25  # outbox delivery and PACS-check jobs
    batch_size: int = 200  # notifications claimed per delivery run
    ack_timeout_seconds: float = 10.0
    # A claimed notification not marked within this (the process died mid-send) is sent again.
    lease_seconds: float = 300.0
    retry_base_seconds: float = 5.0  # backoff doubles per attempt, capped by retry_max_seconds
    retry_max_seconds: float = 600.0
    max_attempts: int = 0  # 0: retry until delivered; an AE/AR answer is final at once
    pacs_check_interval_seconds: float = 15.0  # between two PACS checks of one study
    pacs_give_up_seconds: float = 3600.0  # then the study shows as "images missing"
    http_token: str = ""  # shared secret of POST /notify/study-stable; empty: endpoint off


@dataclass(frozen=True)
class UidSettings:
    # Root for UIDs the broker generates (Study Instance UIDs of orders that lack one).
    root: str = "1.2.826.0.1.3680043.10.1254."


@dataclass(frozen=True)
class MatchingSettings:
    # Patient identity reconciliation (broker.matching). review_threshold, conflict_threshold and
    # auto_threshold are points of the hand-set scorer (matching/score/compare.py), which the
    # intake's conflict test still uses; the bands of scans and searches are probabilities.
    enabled: bool = True
    # A pair scoring at least this goes to the review queue.
    review_threshold: float = 8.0
    # An identifier match whose demographics score below this is flagged, never applied silently.
    conflict_threshold: float = 0.0
    # Assigning authorities whose identifiers alone may link two records automatically.
    trusted_issuers: tuple[str, ...] = ()
    # Link on demographics alone at auto_threshold; off by default (patient safety).
    auto_link_demographics: bool = False
    auto_threshold: float = 20.0
    # At most this many candidates are scored per search, and queued per incoming patient.
    max_candidates: int = 200
    max_queued_per_patient: int = 5
    # The learned model (`broker patients train`; see README "Patient matching"): a pair whose
    # match probability is at least review_probability goes to the review queue (chosen on
    # FEBRL1/2 and the synthetic population: at 0.95 recall >= 0.991 and precision >= 0.988 on
    # each; README "Patient matching" has the figures); with auto_link_demographics, one at
    # auto_probability or above is linked.
    review_probability: float = 0.95
    auto_probability: float = 0.9999
    # Training: at most this many candidate pairs (a seeded sample) feed the EM, and this many
    # random pairs measure u.
    train_max_pairs: int = 1000000
    train_random_pairs: int = 200000
    # A scan on a site without a trained model fits one first when it has at least this many
    # patients; below, the shipped default model scores (too few pairs to learn from).
    train_min_patients: int = 1000


@dataclass(frozen=True)
class FhirSettings:
    # The EHR's FHIR R4 base URL; empty: FHIR order intake is off.
    base_url: str = ""
    # rest-hook (classic R4 criteria Subscription), backport (R5 Backport IG topic), poll (search only).
    mode: str = "rest-hook"
    # The URL the FHIR server calls; empty: http://<web host>:<web port>/fhir/notify.
    callback_url: str = ""
    # Catch-up search interval (in poll mode the only path).
    poll_seconds: float = 60.0
    # rest-hook criteria: imaging ServiceRequests (SNOMED CT 363679005 "Imaging", as the HL7
    # Imaging ServiceRequest IG categorises them), any status so that cancellations are heard.
    criteria: str = "ServiceRequest?category=http://snomed.info/sct|363679005"
    # backport: the SubscriptionTopic canonical URL.
    topic: str = ""
    # How the broker authenticates to the FHIR server: none, basic, bearer, client-credentials.
    auth: str = "none"
    username: str = ""       # basic
    password: str = ""       # basic
    token: str = ""          # bearer
    token_url: str = ""      # client-credentials (OAuth 2.0 client_credentials grant)
    client_id: str = ""
    client_secret: str = ""  # client_secret_basic; or, instead:
    private_key_file: str = ""  # PEM key for a signed JWT assertion (SMART Backend Services)


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    hl7: Hl7Settings = field(default_factory=Hl7Settings)
    dicom: DicomSettings = field(default_factory=DicomSettings)
    web: WebSettings = field(default_factory=WebSettings)
    worklist: WorklistSettings = field(default_factory=WorklistSettings)
    uid: UidSettings = field(default_factory=UidSettings)
    mpps: MppsSettings = field(default_factory=MppsSettings)
    matching: MatchingSettings = field(default_factory=MatchingSettings)
    pacs: PacsSettings = field(default_factory=PacsSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    fhir: FhirSettings = field(default_factory=FhirSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL in force: the configured one, or the embedded SQLite file."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'broker.db').as_posix()}"


_SECTIONS: dict[str, type] = {
    name: hint for name, hint in get_type_hints(Settings).items() if dataclasses.is_dataclass(hint)
}


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None,
                  default_file: Path | None = DEFAULT_CONFIG_FILE) -> Settings:
    """Read settings from `path` (or `default_file` when present), then apply BROKER_* overrides."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is None and default_file is not None and default_file.is_file():
        path = default_file
    if path is not None:
        raw = _read_toml(path)
    return _build(raw, environ, source=str(path) if path else "defaults")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def _build(raw: dict[str, Any], environ: Mapping[str, str], source: str) -> Settings:
    top_hints = get_type_hints(Settings)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] in {source}: must be a table")
            continue
        if key not in top_hints:
            raise ConfigError(f"{key} in {source}: unknown setting")
        kwargs[key] = _coerce(key, value, top_hints[key])
    env_data_dir = environ.get("BROKER_DATA_DIR")
    if env_data_dir is not None:
        kwargs["data_dir"] = _coerce("BROKER_DATA_DIR", env_data_dir, Path)
    for section, cls in _SECTIONS.items():
        kwargs[section] = _build_section(section, cls, raw.get(section, {}), environ, source)
    return Settings(**kwargs)


def _build_section(section: str, cls: type, table: dict[str, Any],
                   environ: Mapping[str, str], source: str) -> Any:
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in hints:
            raise ConfigError(f"{section}.{key} in {source}: unknown setting")
        values[key] = _coerce(f"{section}.{key}", value, hints[key])
    for key, hint in hints.items():
        env_name = f"BROKER_{section.upper()}_{key.upper()}"
        if env_name in environ:
            values[key] = _coerce(env_name, environ[env_name], hint)
    settings = cls(**values)
    _validate(section, settings)
    return settings


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or say what is wrong."""
    from_env = isinstance(value, str)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if hint is int:
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            return int(value)
        if hint is float:
            return float(value)
        if hint is Path:
            return Path(str(value))
        if hint is str:
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return value
        if getattr(hint, "__origin__", None) is tuple:
            items = [v.strip() for v in value.split(",") if v.strip()] if from_env else value
            if not isinstance(items, list):
                raise ValueError("expected a list")
            return tuple(str(v) for v in items)
    except (TypeError, ValueError) as exc:
        reason = str(exc) if "expected" in str(exc) else f"expected {getattr(hint, '__name__', hint)}"
        raise ConfigError(f"{name}: {value!r} is not valid ({reason})") from None
    raise ConfigError(f"{name}: unsupported setting type")


def _validate(section: str, settings: Any) -> None:
    if hasattr(settings, "port") and not 0 <= settings.port <= 65535:
        raise ConfigError(f"{section}.port: {settings.port} is out of range (0-65535)")
    if section == "dicom":
        title = settings.ae_title
        if not title.strip() or len(title) > 16 or "\\" in title or not title.isascii():
            raise ConfigError(f"dicom.ae_title: {title!r} is not a valid AE title (1-16 ASCII characters)")
    if section == "worklist":
        from broker.dicom.rules import RuleError, parse_rules
        try:
            parse_rules(settings.calling_ae_rules)
        except RuleError as exc:
            raise ConfigError(f"worklist.{exc}") from None
    if section == "dicom" and bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError("dicom.tls_cert_file and dicom.tls_key_file: give both or neither")
    if section == "dicom":
        import ipaddress
        for address in settings.allowed_calling_addresses:
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise ConfigError(f"dicom.allowed_calling_addresses: {address!r} is not an "
                                  "IP address or network") from None
    if section == "web" and bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError("web.tls_cert_file and web.tls_key_file: give both or neither")
    if section == "hl7":
        _validate_hl7(settings)
    if section == "mpps":
        for peer in settings.forward_to:
            if parse_peer(peer) is None:
                raise ConfigError(f"mpps.forward_to: {peer!r} is not AE_TITLE@host:port")
    if section == "notify":
        _validate_notify(settings)
    if section == "fhir":
        _validate_fhir(settings)
    if section == "logging" and settings.level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"logging.level: {settings.level!r} is not one of DEBUG, INFO, WARNING, ERROR")


def parse_peer(text: str) -> tuple[str, str, int] | None:
    """'AE@host:port' as (ae_title, host, port), or None when malformed."""
    title, at, address = text.partition("@")
    host, colon, port = address.rpartition(":")
    if not (at and colon and title and host and port.isdigit()) or len(title) > 16:
        return None
    if not 0 < int(port) <= 65535:
        return None
    return title, host, int(port)


def _validate_hl7(settings: Hl7Settings) -> None:
    import ipaddress
    if settings.max_message_bytes < 1024:
        raise ConfigError("hl7.max_message_bytes: must be at least 1024")
    if settings.study_uid_policy not in ("generate", "accession", "reject"):
        raise ConfigError(f"hl7.study_uid_policy: {settings.study_uid_policy!r} is not one of "
                          "generate, accession, reject")
    if settings.max_group < 1:
        raise ConfigError("hl7.max_group: must be at least 1")
    for entry in settings.allowed_peers:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"hl7.allowed_peers: {entry!r} is not an address or network") from None
    if settings.tls_key_file and not settings.tls_cert_file:
        raise ConfigError("hl7.tls_key_file: set hl7.tls_cert_file too")


def parse_hostport(text: str) -> tuple[str, int] | None:
    """'host:port' as (host, port), or None when malformed."""
    host, colon, port = text.strip().rpartition(":")
    if not (colon and host and port.isdigit()) or not 0 < int(port) <= 65535:
        return None
    return host, int(port)


def _validate_notify(settings: NotifySettings) -> None:
    for destination in settings.hl7_to:
        if parse_hostport(destination) is None:
            raise ConfigError(f"notify.hl7_to: {destination!r} is not host:port")
    if settings.trigger not in ("mpps", "pacs", "ian"):
        raise ConfigError(f"notify.trigger: {settings.trigger!r} is not one of mpps, pacs, ian")
    if settings.interval_seconds <= 0 or settings.batch_size < 1:
        raise ConfigError("notify.interval_seconds and notify.batch_size: must be positive")


def _validate_fhir(settings: FhirSettings) -> None:
    if settings.mode not in ("rest-hook", "backport", "poll"):
        raise ConfigError(f"fhir.mode: {settings.mode!r} is not one of rest-hook, backport, poll")
    if settings.auth not in ("none", "basic", "bearer", "client-credentials"):
        raise ConfigError(f"fhir.auth: {settings.auth!r} is not one of none, basic, bearer, "
                          "client-credentials")
    if settings.poll_seconds <= 0:
        raise ConfigError("fhir.poll_seconds: must be more than 0")
    if not settings.base_url:
        return
    if not settings.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"fhir.base_url: {settings.base_url!r} is not an http(s) URL")
    if settings.mode == "backport" and not settings.topic:
        raise ConfigError("fhir.topic: backport mode needs the SubscriptionTopic URL")
    if settings.mode == "rest-hook" and not settings.criteria.startswith("ServiceRequest"):
        raise ConfigError(f"fhir.criteria: {settings.criteria!r} must search ServiceRequest")
    needed = {"basic": ("username", "password"), "bearer": ("token",),
              "client-credentials": ("token_url", "client_id")}
    for key in needed.get(settings.auth, ()):
        if not getattr(settings, key):
            raise ConfigError(f"fhir.{key}: needed with fhir.auth = {settings.auth}")
    if settings.auth == "client-credentials" and \
            bool(settings.client_secret) == bool(settings.private_key_file):
        raise ConfigError("fhir.client_secret or fhir.private_key_file: give one of them with "
                          "fhir.auth = client-credentials")
