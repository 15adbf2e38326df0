"""The "Sensor Start" treatment that drives Nightscout's sensor-age pill (SAGE).

Only the documents are built here; NightscoutV1.post_sensor_start and NightscoutV3.post_sensor_start send
them. The treatment's instant is the sensor's activation time, so posting the same sensor start again hits
the same document: v1 upserts treatments on ``created_at + eventType`` and v3 de-duplicates on the
identifier ``uuid5("<device>_<date ms>_Sensor Start")`` (docs/nightscout-api.md §5.4).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

SENSOR_START = "Sensor Start"
# The one definition: v3.py's entry identifiers use it too (docs/nightscout-api.md §5.4).
NS_UUID_NAMESPACE = uuid.UUID(bytes=b"NightscoutRocks!")
# Activation times outside 2000..2100 are a unit mix-up (ms instead of s) or garbage.
_MIN_S, _MAX_S = 946_684_800, 4_102_444_800
_SERIAL_OK = re.compile(r"[^A-Za-z0-9._-]")


def v3_identifier(key: str) -> str:
    """The identifier Nightscout's API v3 computes itself for a document: uuid5(key, "NightscoutRocks!")."""
    return str(uuid.uuid5(NS_UUID_NAMESPACE, key))


def iso_utc_ms(epoch_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and Z (the form Nightscout stores)."""
    dt = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def sensor_start_ms(activated_at: int) -> int:
    """Epoch ms of a sensor activation given in Unix seconds (ports.Sensor.activated_at)."""
    if isinstance(activated_at, bool) or not isinstance(activated_at, int):
        raise ValueError("activated_at must be the sensor's activation time in whole Unix seconds")
    if not _MIN_S <= activated_at < _MAX_S:
        raise ValueError(
            f"activated_at={activated_at} is not a plausible activation time in Unix seconds "
            "(milliseconds given by mistake?)"
        )
    return activated_at * 1000


def sensor_notes(serial: str) -> str:
    """The treatment's notes: the sensor serial, reduced to safe characters and at most 32 of them."""
    clean = _SERIAL_OK.sub("", str(serial))[:32]
    return f"FreeStyle Libre sensor {clean}" if clean else "FreeStyle Libre sensor"


def sensor_start_identifier(device: str, date_ms: int) -> str:
    """The v3 identifier the server itself computes for a treatment: uuid5("<device>_<date>_<eventType>")."""
    return v3_identifier(f"{device}_{date_ms}_{SENSOR_START}")


def sensor_start_v1(*, serial: str, activated_at: int, device: str) -> dict[str, Any]:
    """The v1 treatment (POST /api/v1/treatments.json, inside a one-element array)."""
    return {
        "eventType": SENSOR_START,
        "created_at": iso_utc_ms(sensor_start_ms(activated_at)),
        "enteredBy": device,
        "notes": sensor_notes(serial),
    }


def sensor_start_v3(*, serial: str, activated_at: int, device: str, app: str) -> dict[str, Any]:
    """The v3 treatment (POST /api/v3/treatments). `app`, `device`, `utcOffset` are immutable: keep them."""
    date_ms = sensor_start_ms(activated_at)
    return {
        "identifier": sensor_start_identifier(device, date_ms),
        "date": date_ms,
        "utcOffset": 0,
        "app": app,
        "device": device,
        "eventType": SENSOR_START,
        "created_at": iso_utc_ms(date_ms),
        "enteredBy": device,
        "notes": sensor_notes(serial),
    }


# --- Announcements (spec §11) ------------------------------------------------------------------------

ANNOUNCEMENT = "Announcement"
NOTES_MAX = 500


def _announcement_notes(text: str) -> str:
    clean = " ".join(str(text).split())
    return clean if len(clean) <= NOTES_MAX else clean[: NOTES_MAX - 3] + "..."


def announcement_identifier(device: str, date_ms: int) -> str:
    return v3_identifier(f"{device}_{date_ms}_{ANNOUNCEMENT}")


def announcement_v1(*, text: str, at_ms: int, device: str) -> dict[str, Any]:
    """An Announcement for POST /api/v1/treatments.json. `isAnnouncement` is sent although v1 adds it
    itself: whatever marks it an announcement keeps it from snoozing Nightscout's alarms."""
    return {
        "eventType": ANNOUNCEMENT,
        "created_at": iso_utc_ms(at_ms),
        "enteredBy": device,
        "notes": _announcement_notes(text),
        "isAnnouncement": True,
    }


def announcement_v3(*, text: str, at_ms: int, device: str, app: str) -> dict[str, Any]:
    """An Announcement for POST /api/v3/treatments. v3 stores fields as given and does not add
    `isAnnouncement`: without it the treatment would snooze urgent alarms for 10 minutes."""
    return {
        "identifier": announcement_identifier(device, at_ms),
        "date": at_ms,
        "utcOffset": 0,
        "app": app,
        "device": device,
        "eventType": ANNOUNCEMENT,
        "created_at": iso_utc_ms(at_ms),
        "enteredBy": device,
        "notes": _announcement_notes(text),
        "isAnnouncement": True,
    }
