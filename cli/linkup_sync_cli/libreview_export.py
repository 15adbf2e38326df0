"""LibreView's glucose export ("Download glucose data"), read row by row: which columns hold what, the
historic readings' local times and values. Pure: no time zone, no Nightscout, nothing but the text.

The facts about the file (docs/libreview-export.md): a title line, a header of 19 columns in the account's
language, one row per record, grouped by serial number and record type. Only the first five columns
matter here: device, serial number, device timestamp (local time, no zone, no seconds), record type, and
the historic glucose value (record type 0), whose unit is part of the column's name.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from linkup_sync.errors import LinkupSyncError

HISTORIC = "0"  # record type of the sensor's stored readings
RECORD_TYPES = {"0": "historic", "1": "scan", "4": "insulin", "5": "food", "6": "note or event"}
MG_DL = "mg/dL"
MMOL_L = "mmol/L"
# The glucose columns' unit, as LibreView writes it at the end of the column's name.
_UNITS = {"mg/dl": MG_DL, "mmol/l": MMOL_L}

# The five columns this module reads, by name, per language; any other language by position (0..4).
_NAMES: dict[str, tuple[str, str, str, str, str]] = {
    "English": ("Device", "Serial Number", "Device Timestamp", "Record Type", "Historic Glucose"),
    "German": ("Gerät", "Seriennummer", "Gerätezeitstempel", "Aufzeichnungstyp", "Glukosewert-Verlauf"),
}
HEADER_COLUMNS = 19  # every LibreView export known has 19 (some German ones append two ketone columns)
_MAX_PREAMBLE_LINES = 4  # the title line (and an empty line in some exports) come before the header
_MAX_FIELD = 200  # longer fields (a pasted note) are cut before anything looks at them

MONTH_FIRST = "MM-DD-YYYY"
DAY_FIRST = "DD-MM-YYYY"
DATE_FORMATS = (MONTH_FIRST, DAY_FIRST)

_STAMP = re.compile(
    r"^(\d{1,4})[-./](\d{1,2})[-./](\d{1,4})[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp])?\.?\s*[Mm]?\.?$"
)
_MG = re.compile(r"^\d{1,3}$")
_MMOL = re.compile(r"^\d{1,2}(?:[.,]\d{1,2})?$")


class ExportUnreadable(LinkupSyncError):
    """The file is not a LibreView glucose export this command can read (or its dates cannot be told)."""

    reason = "export_unreadable"
    needs_person = True


@dataclass(frozen=True)
class Layout:
    """Where the five columns are, how they were found, and the glucose unit."""

    device: int
    serial: int
    stamp: int
    record_type: int
    glucose: int
    unit: str
    language: str  # "English", "German", or "by position"
    header_line: int  # 1-based


@dataclass(frozen=True, slots=True)
class Row:
    """One data row, reduced to the five columns (text as written)."""

    line: int
    device: str
    serial: str
    stamp: str
    record_type: str
    glucose: str


@dataclass(frozen=True, slots=True)
class LocalStamp:
    year: int
    month: int
    day: int
    hour: int
    minute: int


def _unit_of(name: str) -> str | None:
    for suffix, unit in _UNITS.items():
        if name.strip().lower().endswith(suffix):
            return unit
    return None


def _layout_by_name(header: list[str], line: int) -> Layout | None:
    stripped = [h.strip() for h in header]
    for language, names in _NAMES.items():
        positions: list[int] = []
        for i, name in enumerate(names):
            if i == 4:
                found = [j for j, h in enumerate(stripped) if h.startswith(name + " ") and _unit_of(h)]
            else:
                found = [j for j, h in enumerate(stripped) if h == name]
            if not found:
                break
            positions.append(found[0])
        else:
            unit = _unit_of(stripped[positions[4]])
            assert unit is not None
            device, serial, stamp, record_type, glucose = positions
            return Layout(device, serial, stamp, record_type, glucose, unit, language, line)
    return None


def _layout_by_position(header: list[str], line: int) -> Layout | None:
    """Another language: LibreView's fixed positions, recognised by 19 columns whose 5th and 6th (historic
    and scan glucose) end with the same unit."""
    if len(header) < HEADER_COLUMNS:
        return None
    unit = _unit_of(header[4])
    if unit is None or _unit_of(header[5]) != unit:
        return None
    return Layout(0, 1, 2, 3, 4, unit=unit, language="by position", header_line=line)


def _first_columns(fields: list[str]) -> str:
    shown = [f.strip()[:40] for f in fields[:5]]
    return ", ".join(f"'{f}'" for f in shown) + (", …" if len(fields) > 5 else "")


def _refuse_layout(lines: list[list[str]], path: Path) -> ExportUnreadable:
    seen = "; ".join(f"line {n}: {_first_columns(f)}" for n, f in enumerate(lines[:2], start=1) if f)
    return ExportUnreadable(
        f"{path.name} is not a LibreView glucose export this command can read: no header with the columns "
        "Device, Serial Number, Device Timestamp, Record Type and Historic Glucose (mg/dL or mmol/L) was "
        f"found in its first lines ({seen or 'the file is empty'}). Download the file again from LibreView "
        "(Glucose History, Download glucose data) and import it unchanged; a file opened and saved by a "
        "spreadsheet program may have lost its layout."
    )


def _clip(fields: list[str]) -> list[str]:
    return [f if len(f) <= _MAX_FIELD else f[:_MAX_FIELD] for f in fields]


def _reader(handle: Iterable[str]) -> Iterator[list[str]]:
    # csv is told the field size limit it may take; a row beyond it is an error the caller reports.
    return csv.reader(handle, delimiter=",", quotechar='"', strict=False)


def open_export(path: Path) -> tuple[Layout, Iterator[Row]]:
    """The file's layout and its data rows, streamed. Raises ExportUnreadable for a file it cannot read.

    The rows iterator keeps the file open until it is exhausted (or closed).
    """
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ExportUnreadable(f"{path} cannot be opened: {exc.strerror or exc}.") from None
    try:
        rows = _reader(handle)
        preamble: list[list[str]] = []
        layout: Layout | None = None
        for number, fields in enumerate(rows, start=1):
            fields = _clip(fields)
            layout = _layout_by_name(fields, number) or _layout_by_position(fields, number)
            if layout is not None:
                break
            preamble.append(fields)
            if len(preamble) > _MAX_PREAMBLE_LINES:
                break
    except (UnicodeDecodeError, csv.Error):
        handle.close()
        raise ExportUnreadable(
            f"{path.name} is not a LibreView glucose export: it is not UTF-8 text with comma-separated columns. "
            "Download the file again from LibreView (Glucose History, Download glucose data) and import it "
            "unchanged."
        ) from None
    if layout is None:
        handle.close()
        raise _refuse_layout(preamble, path)
    return layout, _rows(handle, rows, layout)


def _rows(handle: TextIO, rows: Iterator[list[str]], layout: Layout) -> Iterator[Row]:
    needed = max(layout.device, layout.serial, layout.stamp, layout.record_type, layout.glucose) + 1
    line = layout.header_line
    try:
        for fields in rows:
            line += 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if len(fields) < needed:
                yield Row(line, "", "", "", "?", "")  # too short: counted as unreadable by the caller
                continue
            yield Row(
                line,
                fields[layout.device].strip()[:_MAX_FIELD],
                fields[layout.serial].strip()[:_MAX_FIELD],
                fields[layout.stamp].strip()[:_MAX_FIELD],
                fields[layout.record_type].strip()[:_MAX_FIELD],
                fields[layout.glucose].strip()[:_MAX_FIELD],
            )
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ExportUnreadable(
            f"Line {line + 1} of the export cannot be read ({type(exc).__name__}). Download the file again from "
            "LibreView and import it unchanged."
        ) from None
    finally:
        handle.close()


# --- dates -----------------------------------------------------------------------------------------


@dataclass
class DateEvidence:
    """What the timestamps of the historic rows say about the order of day and month."""

    day_first: int = 0  # first number above 12: it is the day
    month_first: int = 0  # second number above 12: it is the day, so the month comes first
    year_first: int = 0  # YYYY-MM-DD: no doubt
    am_pm: int = 0
    example_day_first: str = ""
    example_month_first: str = ""

    def add(self, stamp: str) -> None:
        match = _STAMP.match(stamp)
        if match is None:
            return
        a, b = int(match.group(1)), int(match.group(2))
        if match.group(7):
            self.am_pm += 1
        if len(match.group(1)) == 4:
            self.year_first += 1
        elif a > 12 and b <= 12:
            self.day_first += 1
            self.example_day_first = self.example_day_first or stamp
        elif b > 12 and a <= 12:
            self.month_first += 1
            self.example_month_first = self.example_month_first or stamp


def choose_date_format(evidence: DateEvidence, given: str | None) -> str:
    """MONTH_FIRST or DAY_FIRST, from --date-format or from the file. Raises ExportUnreadable when the file
    contradicts itself or --date-format, or when it cannot be told."""
    if evidence.day_first and evidence.month_first:
        raise ExportUnreadable(
            "The export's dates contradict each other: "
            f"'{evidence.example_day_first}' has the day first, '{evidence.example_month_first}' the month first. "
            "Download the file again from LibreView and import it unchanged."
        )
    found = DAY_FIRST if evidence.day_first else MONTH_FIRST if evidence.month_first else None
    if given is not None:
        if found is not None and found != given:
            example = evidence.example_day_first or evidence.example_month_first
            raise ExportUnreadable(
                f"--date-format {given} does not fit the export: '{example}' can only be {found}. "
                f"Use --date-format {found}, or leave the option out."
            )
        return given
    if found is not None:
        return found
    if evidence.year_first:
        return MONTH_FIRST  # irrelevant: year-first dates are read as YYYY-MM-DD
    # AM/PM tells the clock, not the order: LibreView offers DD-MM-YYYY hh:mm AM too (docs/libreview-export.md).
    raise ExportUnreadable(
        "The export's dates do not show whether the day or the month comes first (no day in it is above 12). "
        "Look at a date in the file, then repeat the command with "
        f"--date-format {DAY_FIRST} (e.g. 05-11-2026 for 5 November) or --date-format {MONTH_FIRST} "
        "(e.g. 11-05-2026 for 5 November)."
    )


def parse_stamp(stamp: str, date_format: str) -> LocalStamp | None:
    """The local date and time of a Device Timestamp, or None when it is no valid time of day."""
    match = _STAMP.match(stamp)
    if match is None:
        return None
    first, second, third = match.group(1), int(match.group(2)), match.group(3)
    if len(first) == 4:
        year, month, day = int(first), second, int(third)
    elif len(third) == 4:
        year = int(third)
        month, day = (int(first), second) if date_format == MONTH_FIRST else (second, int(first))
    else:
        return None
    hour, minute = int(match.group(4)), int(match.group(5))
    meridiem = (match.group(7) or "").upper()
    if meridiem:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if meridiem == "P" else 0)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and 1900 < year < 2200):
        return None
    return LocalStamp(year, month, day, hour, minute)


# --- values ------------------------------------------------------------------------------------------


def glucose_mg_dl(text: str, unit: str) -> float | None:
    """The value in mg/dL (not yet rounded or range-checked), or None when the text is no such number.

    mg/dL values are whole numbers; mmol/L values have one decimal (a decimal comma is taken too)."""
    if unit == MG_DL:
        return float(text) if _MG.match(text) else None
    if _MMOL.match(text):
        return float(text.replace(",", ".")) * MG_PER_MMOL
    return None


MG_PER_MMOL = 18.0182  # the molar mass of glucose / 10, as LibreLink and Nightscout convert
