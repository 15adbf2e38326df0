"""`linkup-sync import-csv FILE --timezone ZONE`: LibreView's glucose export into Nightscout, history that
LibreLink Up's 12 hours no longer hold.

The file is read twice, streamed (once for the order of day and month, once for the readings); Nightscout
is read once over the file's span (paged); then the missing readings go up oldest first, 288 at a time,
with a progress line on a terminal. A second import of the same file finds everything there and sends
nothing. Exit status: 0 done (or nothing to do), 1 Nightscout failed (run it again: what arrived is
skipped), 2 the file, the options or the settings need a person.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from linkup_sync.errors import LinkupSyncError, NightscoutError, NightscoutPartialUpload
from linkup_sync.selection import GAP_S

from .adapters import describe_aws_failure
from .import_plan import (
    MAX_MG_DL,
    MIN_MG_DL,
    Choice,
    Plan,
    build_plan,
    choose,
    local_days,
    reading_batches,
    span_ms,
)
from .libreview_export import DATE_FORMATS, HISTORIC, DateEvidence, ExportUnreadable, choose_date_format, open_export
from .output import PROG, write_control

if TYPE_CHECKING:
    from linkup_sync.readings import Reading

    from .import_target import ImportSink

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NEEDS_PERSON = 2
BATCH = 288  # readings per upload call: v1's limit per POST (one day at 5-minute spacing)
CHART_WIDTH = 40

TIMEZONE_TEXT = (
    f"{PROG} import-csv: add --timezone with the time zone the readings were taken in, e.g.\n"
    f"  {PROG} import-csv glucose.csv --timezone Europe/Berlin\n"
    "LibreView writes each reading's local time without a zone; only the zone makes it the right instant\n"
    "(and places the hour repeated when the clocks go back). Use an IANA name such as Europe/London,\n"
    "America/New_York or Australia/Sydney.\n"
)


def add_import_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "import-csv",
        help="import LibreView's glucose export (history older than LibreLink Up's 12 hours) into Nightscout",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Imports the historic readings (the sensor's stored readings, every 5 or 15 minutes) of\n"
        "the file LibreView's 'Download glucose data' gives, into the Nightscout of the same settings as\n"
        "`sync --once`. Scans, food, insulin, notes and events are not imported. No reading is added within\n"
        f"{GAP_S} s of one Nightscout already holds (from any uploader), so a second import adds nothing.\n\n"
        "Exit status: 0 imported (or nothing to import); 1 Nightscout failed (run the same command again);\n"
        "2 the file, an option or a setting needs fixing.",
    )
    parser.add_argument("file", metavar="FILE", help="the CSV file downloaded from LibreView")
    parser.add_argument(
        "--timezone",
        metavar="ZONE",
        help="(required) the IANA time zone the readings were taken in, e.g. Europe/Berlin",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read the file and Nightscout, print the summary and a chart of the days it would fill; send nothing",
    )
    parser.add_argument("--since", metavar="DATE", help="only readings from this local day on (YYYY-MM-DD)")
    parser.add_argument("--until", metavar="DATE", help="only readings up to this local day (YYYY-MM-DD)")
    parser.add_argument(
        "--date-format",
        choices=DATE_FORMATS,
        help="the order of day and month in the file's dates, when the file does not show it",
    )
    parser.add_argument(
        "--secret-id",
        metavar="ID",
        help="read the Nightscout settings from this Secrets Manager secret instead of environment variables",
    )
    parser.add_argument(
        "--connection",
        metavar="ID",
        help="with a secret that lists several people (TARGETS): the LINK_UP_CONNECTION of this export's person",
    )
    parser.add_argument("--now", type=float, help=argparse.SUPPRESS)  # pins the clock (simulator tests)


# --- the summary --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    imported: int = 0
    failed: NightscoutError | None = None


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' if n != 1 else ''}"


def _local(epoch_s: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch_s, tz=zone).strftime("%Y-%m-%d %H:%M %Z")


def summary_lines(plan: Plan, choice: Choice, zone: ZoneInfo, *, dry_run: bool, imported: int) -> list[str]:
    lines = []
    verb = "would import" if dry_run else "imported"
    lines.append(f"{verb}: {_count(imported if not dry_run else len(choice.chosen), 'reading')}")
    lines.append(
        f"already there: {_count(choice.already_there, 'reading')} (Nightscout holds an entry within {GAP_S} s, "
        "from any uploader)"
    )
    if choice.repeated_in_file:
        lines.append(
            f"repeated in the file: {_count(choice.repeated_in_file, 'reading')} (within {GAP_S} s of another "
            "reading of the file, e.g. the same sensor read by a phone and a reader)"
        )
    implausible = []
    if plan.out_of_range:
        implausible.append(f"{plan.out_of_range:,} outside {MIN_MG_DL}–{MAX_MG_DL} mg/dL")
    if plan.in_future:
        implausible.append(f"{plan.in_future:,} dated in the future")
    lines.append(
        f"left out as implausible: {_count(plan.implausible, 'reading')}"
        + (f" ({', '.join(implausible)})" if implausible else "")
    )
    if plan.nonexistent:
        lines.append(
            f"left out, no such local time: {_count(plan.nonexistent, 'reading')} in the hour the clocks skip in "
            f"spring in {plan.zone}: {', '.join(plan.nonexistent_examples)}. Is --timezone right?"
        )
    if plan.unplaceable:
        lines.append(
            f"left out, repeated autumn hour: {_count(plan.unplaceable, 'reading')} with no earlier reading of "
            f"the sensor to tell which of the two hours: {', '.join(plan.unplaceable_examples)}"
        )
    if plan.unreadable:
        where = ", ".join(str(n) for n in plan.unreadable_lines)
        more = ", …" if plan.unreadable > len(plan.unreadable_lines) else ""
        lines.append(f"left out, unreadable: {_count(plan.unreadable, 'row')} (lines {where}{more})")
    if plan.outside_dates:
        lines.append(f"outside --since/--until: {_count(plan.outside_dates, 'reading')}")
    if plan.other_types:
        lines.append(f"not imported (only historic readings are): {plan.not_imported_text()}")
    if plan.epochs:
        first, last = min(plan.epochs), max(plan.epochs)
        lines.append(f"span of the file's readings: {_local(first, zone)} to {_local(last, zone)}")
    if choice.chosen:
        days = local_days(plan, choice.chosen)
        counts = sorted(days.values())
        lines.append(
            f"readings per day {'to import' if dry_run else 'imported'}: {len(choice.chosen) / len(days):.0f} on "
            f"average over {_count(len(days), 'day')} (fewest {counts[0]}, most {counts[-1]})"
        )
    return lines


def chart_lines(days: Counter[date]) -> list[str]:
    """One bar per local day from the first to the last, empty days included, scaled to the fullest."""
    if not days:
        return []
    top = max(days.values())
    lines = []
    day, last = min(days), max(days)
    while day <= last:
        n = days.get(day, 0)
        bar = "█" * max(1 if n else 0, round(n / top * CHART_WIDTH))
        lines.append(f"  {day.isoformat()} {bar:<{CHART_WIDTH}} {n}")
        day += timedelta(days=1)
    return lines


def progress_text(done: int, total: int, elapsed_s: float) -> str:
    """`imported 1,152 / 26,000 (480/s, about 0:52 left)`."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    text = f"imported {done:,} / {total:,}"
    if rate > 0:
        left = int((total - done) / rate)
        text += f" ({rate:,.0f}/s, about {left // 60}:{left % 60:02d} left)"
    return text


# --- the command --------------------------------------------------------------------------------------


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{option} must be a day written YYYY-MM-DD, e.g. 2026-09-01, not '{text}'.") from None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"--timezone '{name}' is not a time zone this computer knows. Use an IANA name such as Europe/Berlin, "
            "Europe/London or America/New_York (on a system without time zone data: pip install tzdata)."
        ) from None


def read_plan(
    path: Path,
    *,
    date_format: str | None,
    zone: ZoneInfo,
    zone_name: str,
    now_s: float,
    since: date | None,
    until: date | None,
) -> Plan:
    """The export read twice, streamed: the order of day and month, then the readings."""
    layout, rows = open_export(path)
    evidence = DateEvidence()
    for row in rows:
        if row.record_type == HISTORIC:
            evidence.add(row.stamp)
    chosen_format = choose_date_format(evidence, date_format)
    layout, rows = open_export(path)
    return build_plan(
        rows,
        unit=layout.unit,
        date_format=chosen_format,
        zone=zone,
        zone_name=zone_name,
        now_s=now_s,
        since=since,
        until=until,
    )


def cmd_import(
    args: argparse.Namespace,
    env: Mapping[str, str],
    clock: Callable[[], float],
    out: TextIO,
    err: TextIO,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    from .import_target import import_sink, read_span

    if not args.timezone:
        err.write(TIMEZONE_TEXT)
        return EXIT_NEEDS_PERSON
    try:
        zone = _zone(args.timezone)
        since, until = _day(args.since, "--since"), _day(args.until, "--until")
    except ValueError as exc:
        err.write(f"{PROG} import-csv: {exc}\n")
        return EXIT_NEEDS_PERSON
    try:
        plan = read_plan(
            Path(args.file),
            date_format=args.date_format,
            zone=zone,
            zone_name=args.timezone.strip(),
            now_s=clock(),
            since=since,
            until=until,
        )
    except ExportUnreadable as exc:
        err.write(f"{PROG} import-csv: {exc.message}\n")
        return EXIT_NEEDS_PERSON

    def fail(exc: LinkupSyncError) -> int:
        err.write(f"{PROG} import-csv: failed: {exc.message}\n")
        return EXIT_NEEDS_PERSON if exc.needs_person and not isinstance(exc, NightscoutError) else EXIT_FAILED

    try:
        sink = import_sink(args, env, clock)
        window = span_ms(plan)
        existing = read_span(sink, *window) if window is not None else []
    except LinkupSyncError as exc:
        return fail(exc)
    except Exception as exc:
        text = describe_aws_failure(exc)
        if text is None:
            raise
        err.write(f"{PROG} import-csv: failed: {text}\n")
        return EXIT_FAILED

    choice = choose(plan, existing)
    outcome = Outcome()
    if not args.dry_run and choice.chosen:
        outcome = _upload(sink, reading_batches(plan, choice.chosen, BATCH), len(choice.chosen), out, monotonic)
    return _finish(plan, choice, zone, outcome, dry_run=args.dry_run, out=out, err=err)


def _finish(
    plan: Plan, choice: Choice, zone: ZoneInfo, outcome: Outcome, *, dry_run: bool, out: TextIO, err: TextIO
) -> int:
    """The summary, the days a dry run would fill, or where an upload stopped; the exit status."""
    for line in summary_lines(plan, choice, zone, dry_run=dry_run, imported=outcome.imported):
        out.write(line + "\n")
    if dry_run:
        chart = chart_lines(local_days(plan, choice.chosen))
        if chart:
            out.write("days it would fill (readings per local day):\n" + "\n".join(chart) + "\n")
        out.write("dry run: nothing was sent to Nightscout\n")
        return EXIT_OK
    if outcome.failed is not None:
        err.write(
            f"{PROG} import-csv: failed after {outcome.imported:,} of {len(choice.chosen):,} readings: "
            f"{outcome.failed.message}\nRun the same command again: the readings that arrived are skipped.\n"
        )
        return EXIT_FAILED
    return EXIT_OK


def _upload(
    sink: ImportSink, batches: Iterable[list[Reading]], total: int, out: TextIO, monotonic: Callable[[], float]
) -> Outcome:
    outcome = Outcome()
    started = monotonic()
    show = out.isatty()
    for batch in batches:
        try:
            outcome.imported += sink.upload(batch)
        except NightscoutPartialUpload as exc:
            outcome.imported += len(exc.accepted)
            outcome.failed = exc
            break
        except NightscoutError as exc:
            outcome.failed = exc
            break
        if show:
            # The carriage return and erase-line go around the command line's filter of control characters
            # (output.PrintableText.control), which would strip them from ordinary text.
            write_control(out, "\r")
            out.write(progress_text(outcome.imported, total, monotonic() - started))
            write_control(out, "\033[K")
            out.flush()
    if show:
        out.write("\n")
    return outcome
