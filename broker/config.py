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


@dataclass(frozen=True)
class DicomSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = "BROKER"
    max_associations: int = 16
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


@dataclass(frozen=True)
class WorklistSettings:
    # Step statuses the Modality Worklist offers.
    served_statuses: tuple[str, ...] = ("SCHEDULED", "ARRIVED", "READY")
    # Maximum number of C-FIND matches per query; 0: no limit.
    max_results: int = 0
    # Match PN keys case-insensitively (PS3.4 C.2.2.2.1 leaves this to the SCP).
    case_insensitive_names: bool = True
    # Date window around today served to every query; -1: no limit (no hidden filter).
    days_behind: int = -1
    days_ahead: int = -1
    # Per-calling-AE narrowing of empty keys, e.g. "CT1: station=CT1 modality=CT" (see dicom/rules.py).
    calling_ae_rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class UidSettings:
    # Root for UIDs the broker generates (Study Instance UIDs of orders that lack one).
    root: str = "1.2.826.0.1.3680043.10.1254."


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
    if section == "hl7" and settings.max_message_bytes < 1024:
        raise ConfigError("hl7.max_message_bytes: must be at least 1024")
    if section == "logging" and settings.level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"logging.level: {settings.level!r} is not one of DEBUG, INFO, WARNING, ERROR")
