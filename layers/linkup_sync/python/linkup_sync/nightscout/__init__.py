"""Nightscout API v1 and v3 adapters. Nothing outside this package knows Nightscout's JSON."""

from .auth import api_secret_header
from .url import normalize_nightscout_url
from .v1 import NightscoutV1
from .v3 import NightscoutV3, is_access_token

__all__ = [
    "NightscoutV1",
    "NightscoutV3",
    "api_secret_header",
    "is_access_token",
    "normalize_nightscout_url",
]
