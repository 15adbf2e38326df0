"""The LibreLink Up simulator's constants: regions, ticket lifetimes, lockout and history windows
(``docs/librelinkup-api.md``)."""

from __future__ import annotations

from typing import Any

JsonObj = dict[str, Any]

# --------------------------------------------------------------------------------------------------
# Constants (spec references in brackets)
# --------------------------------------------------------------------------------------------------

#: Region keys served (lower case, §2.1). ``global`` stands for ``api.libreview.io``: it only redirects.
REGIONS: frozenset[str] = frozenset(
    {"ae", "ap", "au", "ca", "de", "eu", "eu2", "fr", "jp", "us", "la", "ru", "cn", "global"}
)
TICKET_DURATION_S = 15_552_000  # 180 days [§5.2, §12]
STEP_TICKET_DURATION_S = 3_600  # 1 hour [§5.4]
LOCK_FAILURES = 3  # [§5.6]
LOCK_INTERVAL_S = 60
LOCKOUT_S = 300
HISTORY_WINDOW_S = 12 * 3600  # graphData covers ~12 h [§7.2]
HISTORY_LAG_S = 17 * 60  # newest graphData point ~17 min older than the current reading [§7.2]
HISTORY_EVERY = 5  # every 5th per-minute sample is a history point (5-minute spacing)
TREND_WINDOW_S = 15 * 60  # TrendArrow from the slope over the last 15 min
LOGBOOK_WINDOW_S = 14 * 86400  # [§8]
MAX_HANG_S = 30.0  # upper bound for hang() so a test cannot wedge the suite
MAX_BODY = 1 << 20

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    430: "Unknown",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    911: "Unknown",
}

_COUNTRY_REGION = {"DE": "eu", "GB": "eu2", "IE": "eu2", "US": "us", "FR": "fr", "JP": "jp", "AU": "au"}
_REGION_COUNTRY = {
    "ae": "AE",
    "ap": "SG",
    "au": "AU",
    "ca": "CA",
    "de": "DE",
    "eu": "DE",
    "eu2": "GB",
    "fr": "FR",
    "jp": "JP",
    "us": "US",
    "la": "MX",
    "ru": "RU",
    "cn": "CN",
    "global": "US",
}
_REGION_LANG = {"DE": "de-DE", "FR": "fr-FR", "GB": "en-GB", "US": "en-US", "JP": "ja-JP"}
