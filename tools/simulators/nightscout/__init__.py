"""A faithful, deterministic Nightscout stand-in (development tooling, never shipped to Lambda).

Reproduces what a CGM bridge can observe of a real Nightscout server (cgm-remote-monitor 15.0.7 by
default; ``version="15.0.6"`` or older switches to the legacy behaviour). Section numbers refer to
``docs/nightscout-api.md``.

* API v1 upload ``POST /api/v1/entries[.json|/]``: credentials (§3.1/§3.2), ``api:entries:read`` +
  ``api:entries:create`` (§3.4), body rules (§2.2), date normalisation (§2.4), upsert on
  ``{sysTime, type}`` with ``$set`` merge (15.0.7) or full replacement (≤ 15.0.6) (§2.5), replies (§2.6).
* Read-back ``GET /api/v1/entries[.json]``, ``/entries/<type>``, ``/entries/current``, echo (§4):
  implicit 4-day window, ``find[...]`` with ``parseInt`` semantics, TSV/CSV content negotiation.
* ``/api/v1/status``, ``/api/v1/verifyauth`` (§3.6), ``/api/v2/authorization/*`` (§3.3, §3.7).
* ``AUTH_FAIL_DELAY`` (§3.5) as a real, bounded sleep per client IP.
* API v3 (§5): Bearer-JWT only, one document per POST, identifier rule, de-duplication,
  immutable fields, search, read, version, status, lastModified; entries and treatments.
* Treatments (§11): v1 upsert on ``created_at + eventType`` with ``isAnnouncement`` added for
  announcements, v3 stored as sent; the 10-minute alarm snooze a recent non-announcement treatment
  causes (:meth:`NightscoutStandIn.urgent_alarms_snoozed`) and the announcement it would push.
* Faults: unreachable host, canned error replies, hanging requests.

Time comes from the injected clock (seconds since the epoch), except for the real-time waits
(``AUTH_FAIL_DELAY``, :meth:`NightscoutStandIn.hang_next`, the ≤ 15.0.6 ``POST []`` hang), which are
real seconds, bounded, and released by :meth:`NightscoutStandIn.stop`.

Modules, one concern each, imported one way (each only from those above it): ``constants``;
``values`` (JavaScript coercion, moment.js dates, ``qs``); ``plumbing`` (records, replies, purification,
content negotiation); ``store`` (Mongo-like matching, the entries upsert and query); ``auth`` (secret,
tokens, roles, JWT, fail delay); ``treatments`` (announcements, the snooze rule); ``v1`` and ``v3`` (the
routes); ``app`` (:class:`NightscoutStandIn`: state, faults, routing, the HTTP handler).
"""

from __future__ import annotations

from tools.simulators.nightscout.app import NightscoutStandIn
from tools.simulators.nightscout.auth import access_token_for
from tools.simulators.nightscout.constants import (
    API3_VERSION,
    DEFAULT_API_SECRET,
    NS_UUID_NAMESPACE,
    UNAUTHORIZED_BODY,
)
from tools.simulators.nightscout.plumbing import RecordedRequest
from tools.simulators.nightscout.v3 import v3_identifier

__all__ = [
    "API3_VERSION",
    "DEFAULT_API_SECRET",
    "NS_UUID_NAMESPACE",
    "UNAUTHORIZED_BODY",
    "NightscoutStandIn",
    "RecordedRequest",
    "access_token_for",
    "v3_identifier",
]
