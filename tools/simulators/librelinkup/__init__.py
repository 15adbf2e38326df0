"""A deterministic LibreLink Up (LLU v4 follower API) simulator for local tests.

Development tooling only (never shipped to Lambda). It implements the behaviour described in
``docs/librelinkup-api.md`` §15 ("Simulator blueprint"): login with redirects, steps, bad
credentials and lockout; HS256-shaped tokens with a fresh ``ticket`` on every authenticated reply;
the authenticated-endpoint checks (911 → 920 → 401 → 400 → foreign host / unknown patient); a
per-patient glucose series with a current reading and a lagging 5-minute history; and fault switches
(edge HTML pages, 430, 5xx, truncated or non-JSON bodies, hanging requests, ...).

Every region is served under a path prefix of one local ``ThreadingHTTPServer``:
``http://127.0.0.1:PORT/{region}/llu/auth/login``; the region segment plays the role of the host.

Time comes from a :class:`~tools.simulators.clock.VirtualClock`; all generated values depend only on
``seed`` and the clock, so two simulators built the same way answer byte-for-byte the same.

Ground truth for tests: :meth:`SimPatient.samples_between` (the per-minute sensor series),
:attr:`LinkUpSimulator.served` (what each successful graph reply contained) and
:attr:`LinkUpSimulator.requests` (every request received).

Modules, one concern each, imported one way (each only from those above it): ``constants``;
``plumbing`` (pure helpers, records, the reply); ``glucose`` (:class:`SimPatient`: curve, reading
times, trend, JSON); ``accounts`` (accounts, patients, tokens, login bodies); ``faults`` (the fault
switches); ``routes`` (region prefixes, login, authenticated endpoints); ``app``
(:class:`LinkUpSimulator`: state, request log, dispatch, the HTTP handler).
"""

from __future__ import annotations

from tools.simulators.librelinkup.accounts import SimAccount, account_id_hash
from tools.simulators.librelinkup.app import LinkUpSimulator
from tools.simulators.librelinkup.constants import HISTORY_LAG_S, HISTORY_WINDOW_S, REGIONS
from tools.simulators.librelinkup.faults import CLOUDFLARE_1015_HTML, CLOUDFLARE_ATTENTION_HTML
from tools.simulators.librelinkup.glucose import (
    SimPatient,
    format_llu_timestamp,
    measurement_color,
    parse_llu_timestamp,
    trend_arrow_for_rate,
)
from tools.simulators.librelinkup.plumbing import RecordedRequest, ServedGraph, compare_versions

__all__ = [
    "CLOUDFLARE_1015_HTML",
    "CLOUDFLARE_ATTENTION_HTML",
    "HISTORY_LAG_S",
    "HISTORY_WINDOW_S",
    "REGIONS",
    "LinkUpSimulator",
    "RecordedRequest",
    "ServedGraph",
    "SimAccount",
    "SimPatient",
    "account_id_hash",
    "compare_versions",
    "format_llu_timestamp",
    "measurement_color",
    "parse_llu_timestamp",
    "trend_arrow_for_rate",
]
