"""What a received notification says, as hints for the sync worker (no I/O).

Classic R4 rest-hook (FHIR R4 Subscription, 2.46.7): an empty POST ("search what changed") or
the resource itself (PUT <endpoint>/<Type>/<id>). Backport (HL7 Subscriptions R5 Backport IG,
R4 profile): a history Bundle whose first entry is a Parameters SubscriptionStatus with type
handshake, heartbeat, event-notification or query-status; payload empty, id-only or
full-resource.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field


class UnreadableNotification(ValueError):
    """The body is not JSON, or not a FHIR resource."""


@dataclass(frozen=True)
class Notice:
    """One notification, read."""
    kind: str                                  # ping, resource, handshake, heartbeat, event, ...
    resources: tuple[dict, ...] = ()           # full resources delivered
    focus: tuple[str, ...] = ()                # references to read (id-only payload)
    event_numbers: tuple[int, ...] = ()
    events_since_start: int | None = None
    subscription: str = ""
    search: bool = False                       # nothing precise: search what changed
    included: dict[str, dict] = field(default_factory=dict)


def parse_body(raw: bytes) -> dict | None:
    """The JSON object of a body; None when empty; UnreadableNotification otherwise."""
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise UnreadableNotification("body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise UnreadableNotification("body is not a FHIR resource")
    return body


def read_notice(body: dict | None) -> Notice:
    """The hints of a notification body (None: an empty rest-hook ping)."""
    if body is None:
        return Notice("ping", search=True)
    if body.get("resourceType") != "Bundle":
        return Notice("resource", resources=(body,))
    entries = [e for e in body.get("entry") or [] if isinstance(e, dict)]
    first = (entries[0].get("resource") if entries else None) or {}
    if body.get("type") == "history" and first.get("resourceType") == "Parameters":
        return _backport(first, [e.get("resource") for e in entries[1:]])
    resources, included = _split([e["resource"] for e in entries
                                  if isinstance(e.get("resource"), dict)])
    return Notice("bundle", resources=resources, included=included, search=not resources)


def _backport(status: dict, resources: list) -> Notice:
    """A backport SubscriptionStatus (parameter names as in the IG, kebab-case; camelCase too)."""
    kind, subscription, since = "", "", None
    numbers: list[int] = []
    focus: list[str] = []
    for parameter in status.get("parameter") or []:
        name = parameter.get("name")
        if name == "type":
            kind = str(parameter.get("valueCode", ""))
        elif name == "subscription":
            subscription = str((parameter.get("valueReference") or {}).get("reference", ""))
        elif name in ("events-since-subscription-start", "eventsSinceSubscriptionStart"):
            since = _number(parameter)
        elif name in ("notification-event", "notificationEvent"):
            for part in parameter.get("part") or []:
                if part.get("name") in ("event-number", "eventNumber"):
                    number = _number(part)
                    if number is not None:
                        numbers.append(number)
                elif part.get("name") == "focus":
                    focus.append(str((part.get("valueReference") or {}).get("reference", "")))
    delivered, included = _split([r for r in resources if isinstance(r, dict)])
    keys = {f"{r.get('resourceType')}/{r.get('id')}" for r in delivered}
    to_read = tuple(f for f in focus if f and _relative(f) not in keys)
    event = kind == "event-notification"
    return Notice("event" if event else kind or "status", resources=delivered, focus=to_read,
                  event_numbers=tuple(numbers), events_since_start=since,
                  subscription=subscription, included=included,
                  # An event with neither resource nor focus (payload "empty"): search.
                  search=event and not delivered and not to_read)


def _split(resources: list[dict]) -> tuple[tuple[dict, ...], dict[str, dict]]:
    """ServiceRequests to apply, and the other resources (a Patient sent along) by reference."""
    orders = tuple(r for r in resources if r.get("resourceType") == "ServiceRequest")
    others = {f"{r.get('resourceType')}/{r.get('id')}": r for r in resources
              if r.get("resourceType") != "ServiceRequest"}
    return orders, others


def _number(parameter: dict) -> int | None:
    for key in ("valueString", "valueInteger64", "valueInteger", "valueUnsignedInt"):
        if key in parameter:
            try:
                return int(parameter[key])
            except (TypeError, ValueError):
                return None
    return None


def _relative(reference: str) -> str:
    """'http://host/fhir/ServiceRequest/1' -> 'ServiceRequest/1'."""
    parts = reference.rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    return "/".join(parts[-2:])
