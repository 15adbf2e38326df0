"""The recorded LibreLink Up replies in tests/fixtures/librelinkup, and who they are about.

``INDEX`` gives each file's HTTP status and content type (from index.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "librelinkup"
INDEX: dict[str, Any] = json.loads((FIXTURES / "index.json").read_text(encoding="utf-8"))["files"]

# the follower and the patient of the recorded replies
EMAIL = "fiona.follower@example.invalid"
USER_ID = "3f1c2a9e-5b7d-4e21-9c3a-7d2e8f6a1b04"
ACCOUNT_ID = "bce7bb60a76afe72032429e3fc36dce9524a9d51cf0e507220cfa81a8dba91dd"
PATIENT = "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def fixture_meta(name: str) -> tuple[int, str]:
    meta = INDEX[name]
    return int(meta["http_status"]), str(meta["content_type"])
