"""Nightscout API v1 adapter. Nothing outside this package knows Nightscout's JSON."""

from .auth import api_secret_header
from .url import normalize_nightscout_url
from .v1 import NightscoutV1

__all__ = ["NightscoutV1", "api_secret_header", "normalize_nightscout_url"]
