"""`broker fhir status` and `broker fhir sync`."""
from __future__ import annotations

import argparse
from typing import Callable

from broker.config import Settings
from broker.store.runtime import open_store


def register(add_parser: Callable[..., argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    """Add the `fhir` commands to the CLI."""
    fhir = add_parser("fhir", parents=[common], help="FHIR order intake",
                      description="The FHIR subscription and catch-up search.")
    sub = fhir.add_subparsers(title="commands", metavar="COMMAND")
    status = sub.add_parser("status", parents=[common],
                            help="the subscription, its state, the last event and the lag")
    status.set_defaults(run=_status)
    sync = sub.add_parser("sync", parents=[common], help="run a catch-up search now")
    sync.add_argument("--since", metavar="INSTANT",
                      help="search from this FHIR instant (e.g. 2026-01-01T00:00:00Z) "
                           "instead of the stored watermark")
    sync.set_defaults(run=_sync)


def _build(settings: Settings, store):
    from broker.fhir.sync import FhirSync, callback_url
    return FhirSync(settings, store.engine, store.sessions, callback_url(settings, None))


def _status(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.fhir.base_url:
        print("fhir intake is off (fhir.base_url is empty)")
        return 1
    with open_store(settings) as store:
        state = _build(settings, store).status()
    print(f"base url           {settings.fhir.base_url} ({settings.fhir.mode})")
    for key in ("subscription_id", "subscription_status", "subscription_error", "last_event",
                "last_event_at", "last_heartbeat", "last_handshake", "revived", "watermark",
                "last_catch_up", "lag_seconds"):
        if key in state:
            print(f"{key.replace('_', ' '):<18} {state[key]}")
    return 0


def _sync(args: argparse.Namespace, settings: Settings) -> int:
    from broker.fhir.client import FhirError
    if not settings.fhir.base_url:
        print("fhir intake is off (fhir.base_url is empty)")
        return 1
    with open_store(settings) as store:
        try:
            count = _build(settings, store).catch_up(args.since)
        except FhirError as exc:
            print(f"broker: {exc}")
            return 1
    print(f"catch-up: {count} ServiceRequest versions applied or stored")
    return 0
