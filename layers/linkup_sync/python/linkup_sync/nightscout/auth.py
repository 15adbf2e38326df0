"""The `api-secret` header value for Nightscout API v1 (docs/nightscout-api.md §3)."""

from __future__ import annotations

import hashlib
import re

_PREHASHED = re.compile(r"^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{128})$")


def api_secret_header(token: str) -> str:
    """The value to send as `api-secret` for NIGHTSCOUT_API_TOKEN.

    Decision: a value that already is a SHA-1 (40 hex digits, any case) or SHA-512 (128 hex digits) is
    sent unchanged; anything else is sent as sha1_hex(value). Nightscout accepts sha1(API_SECRET) and
    sha1(access token) alike (spec §3.2), so the site's API_SECRET, an access token such as
    ``bridge-0123456789abcdef`` and a pre-hashed SHA-1 all work with this one rule, and the raw value
    never travels. (An API_SECRET that itself consists of exactly 40 or 128 hex digits would be taken as
    pre-hashed; enter sha1 of it instead.) Surrounding whitespace is ignored. Never log the result.
    """
    if not isinstance(token, str) or not token.strip():
        raise ValueError("NIGHTSCOUT_API_TOKEN is empty; put your site's API_SECRET or an access token there.")
    value = token.strip()
    if _PREHASHED.match(value):
        return value
    return hashlib.sha1(value.encode("utf-8")).hexdigest()  # noqa: S324 - Nightscout's protocol, not security
