"""LibreLink Up app versions: the one the bridge sends until LibreLink Up names a higher minimum, and
how two versions compare."""

from __future__ import annotations

import re

DEFAULT_VERSION = "4.16.0"  # the built-in version: sent until LibreLink Up names a higher minimum

_VERSION = re.compile(r"^\d{1,4}(\.\d{1,4}){0,3}$")


def version_key(version: str | None) -> tuple[int, ...] | None:
    """'4.16.0' -> (4, 16, 0), padded so that 4.16 == 4.16.0; None when it is not a version number."""
    if not isinstance(version, str) or not _VERSION.match(version.strip()):
        return None
    parts = [int(p) for p in version.strip().split(".")]
    return tuple(parts + [0] * (4 - len(parts)))
