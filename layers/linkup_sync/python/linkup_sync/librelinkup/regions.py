"""LibreLink Up regions and their API hosts (docs/librelinkup-api.md §2.1)."""

from __future__ import annotations

import re

REGIONS: frozenset[str] = frozenset({"ae", "ap", "au", "ca", "de", "eu", "eu2", "fr", "jp", "us", "la", "ru", "cn"})
ALIASES: dict[str, str] = {"gb": "eu2", "uk": "eu2"}

DEFAULT_URL_TEMPLATE = "https://api-{region}.libreview.io"

# Hosts that do not follow the api-{region}.libreview.io pattern (used with the default template only).
_SPECIAL_HOSTS: dict[str, str] = {
    "ru": "https://api.libreview.ru",
    "cn": "https://api-cn.myfreestyle.cn",
}

# A region key the server may name in a login redirect that this version does not know yet. It becomes
# part of a host name, so only a short, plain key is accepted (nothing that could change the host).
_SAFE_KEY = re.compile(r"^[a-z]{2,3}[0-9]?$")


def valid_regions_text() -> str:
    return ", ".join(sorted(r.upper() for r in REGIONS)) + " (GB and UK mean EU2)"


def normalize_region(value: str) -> str:
    """The lower-case region key for a configured value like 'EU', ' de ', 'GB'. Raises ValueError."""
    key = str(value).strip().lower()
    key = ALIASES.get(key, key)
    if key not in REGIONS:
        raise ValueError(
            f"LINK_UP_REGION '{str(value).strip()}' is not a LibreLink Up region; use one of {valid_regions_text()}."
        )
    return key


def redirect_region(value: object) -> str | None:
    """The region key from a login redirect, or None if it is unusable (not a short plain key)."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower()
    key = ALIASES.get(key, key)
    if key in REGIONS or _SAFE_KEY.match(key):
        return key
    return None


def base_url(template: str, region: str) -> str:
    """The API base URL (no trailing slash) for a region key.

    With the default template, RU and CN use their own hosts; a custom template (e.g. a local simulator
    "http://127.0.0.1:8080/{region}") is always formatted as given.
    """
    if template == DEFAULT_URL_TEMPLATE and region in _SPECIAL_HOSTS:
        return _SPECIAL_HOSTS[region]
    return template.format(region=region).rstrip("/")
