"""The broker's own Subscription on the FHIR server: created or updated at start, found again
by its meta.tag (never duplicated), watched, and revived when the server put it in error.

A server answers `requested` and activates later (FHIR R4 2.46.5); some stop a subscription
for good after failed deliveries (status `error`) until it is set back to `requested`.
"""
from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from broker.config import FhirSettings
from broker.fhir.client import FhirClient, entries
from broker.fhir.intake import OWN_TAG_SYSTEM
from broker.store.fhir import get_state, init_state, set_state

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Broker-Secret"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
BACKPORT_PROFILE = f"{BACKPORT}/backport-subscription"
HEARTBEAT_SECONDS = 60


@dataclass(frozen=True)
class SubscriptionState:
    """The Subscription as last read from the server."""
    id: str
    status: str
    error: str = ""


def shared_secret(sessions: sessionmaker[Session]) -> str:
    """The notification secret, made once and kept in the database (every process shares it)."""
    with sessions.begin() as session:
        return init_state(session, "secret", secrets.token_urlsafe(32))


def installation_tag(sessions: sessionmaker[Session]) -> str:
    """The code of the meta.tag that marks this broker's Subscription (one per database)."""
    with sessions.begin() as session:
        return init_state(session, "installation", uuid.uuid4().hex)


def desired_subscription(settings: FhirSettings, callback: str, secret: str, tag: str) -> dict:
    """The Subscription the broker wants, as settings say (rest-hook or backport)."""
    meta: dict = {"tag": [{"system": OWN_TAG_SYSTEM, "code": tag}]}
    channel: dict = {"type": "rest-hook", "endpoint": callback,
                     "payload": "application/fhir+json", "header": [f"{SECRET_HEADER}: {secret}"]}
    resource = {"resourceType": "Subscription", "meta": meta, "status": "requested",
                "reason": "Imaging orders for the modality worklist broker"}
    if settings.mode == "backport":
        meta["profile"] = [BACKPORT_PROFILE]
        resource["criteria"] = settings.topic
        channel["_payload"] = {"extension": [{"url": f"{BACKPORT}/backport-payload-content",
                                              "valueCode": "full-resource"}]}
        channel["extension"] = [{"url": f"{BACKPORT}/backport-heartbeat-period",
                                 "valueUnsignedInt": HEARTBEAT_SECONDS}]
    else:
        # R4 rest-hook with a payload: the server PUTs the resource to <endpoint>/Type/id.
        resource["criteria"] = settings.criteria
    resource["channel"] = channel
    return resource


def _differs(current: dict, desired: dict) -> bool:
    keys = ("criteria",)
    channel_keys = ("endpoint", "payload", "header", "_payload")
    return (any(current.get(k) != desired.get(k) for k in keys)
            or any((current.get("channel") or {}).get(k) != desired["channel"].get(k)
                   for k in channel_keys)
            or current.get("status") in ("error", "off"))


class SubscriptionKeeper:
    """Creates, finds, watches and revives the broker's Subscription."""

    def __init__(self, settings: FhirSettings, client: FhirClient,
                 sessions: sessionmaker[Session], callback: str) -> None:
        self.settings = settings
        self.client = client
        self.sessions = sessions
        self.callback = callback

    def ensure(self) -> SubscriptionState:
        """Create the Subscription, or update the one carrying our tag when it differs."""
        secret, tag = shared_secret(self.sessions), installation_tag(self.sessions)
        desired = desired_subscription(self.settings, self.callback, secret, tag)
        found = entries(self.client.search("Subscription", [
            ("_tag", f"{OWN_TAG_SYSTEM}|{tag}")]), "match")
        if found:
            current = found[0]
            for extra in found[1:]:  # never two: an earlier run's duplicate is switched off
                self.client.update({**extra, "status": "off"})
            if _differs(current, desired):
                current = self.client.update({**desired, "id": current["id"]})
                log.info("fhir: Subscription/%s updated (status %s)", current.get("id"),
                         current.get("status"))
        else:
            current = self.client.create(desired)
            log.info("fhir: Subscription/%s created (status %s)", current.get("id"),
                     current.get("status"))
        return self._remember(current)

    def watch(self) -> SubscriptionState:
        """Re-read the Subscription; one in error or off is set back to requested."""
        with self.sessions() as session:
            sub_id = get_state(session, "subscription_id")
        current = self.client.read(f"Subscription/{sub_id}") if sub_id else None
        if current is None:
            return self.ensure()
        if current.get("status") in ("error", "off"):
            log.warning("fhir: Subscription/%s is %s (%s): reviving it", sub_id,
                        current.get("status"), current.get("error", "no reason given"))
            with self.sessions.begin() as session:
                set_state(session, "revived", str(int(get_state(session, "revived", "0")) + 1))
            return self.ensure()
        return self._remember(current)

    def _remember(self, current: dict) -> SubscriptionState:
        state = SubscriptionState(str(current.get("id", "")), str(current.get("status", "")),
                                  str(current.get("error", "")))
        with self.sessions.begin() as session:
            if get_state(session, "subscription_id") != state.id:
                set_state(session, "last_event", "0")  # a new subscription numbers from 1
            set_state(session, "subscription_id", state.id)
            set_state(session, "subscription_status", state.status)
        return state
