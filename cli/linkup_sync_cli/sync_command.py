"""`linkup-sync sync --once`: one sync run from this machine, exactly the Lambda function's code path.

It takes runtime.run_once; only the adapters differ (adapters.py): credentials from environment
variables (or the stack's secret, --secret-id) and the state from a local JSON file (or the stack's
table, --table), so it also runs from cron on a home server without AWS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from linkup_sync.errors import LinkupSyncError
from linkup_sync.settings import Settings

from .adapters import (
    CollectingSink,
    NoRecordStore,
    collecting_factory,
    credential_source,
    describe_aws_failure,
    missing_table,
    reset_login,
    state_store,
)
from .output import PROG, age_text, package_logs, utc_text

if TYPE_CHECKING:
    from linkup_sync.ports import CredentialSource, StateStore
    from linkup_sync.report import RunReport

# Exit status of `sync --once` (documented in its --help and the README): cron and monitoring check it.
EXIT_OK = 0  # uploaded, nothing new, or a breaker that clears by itself skipped the run
EXIT_FAILED = 1  # the run failed; the next runs try again
EXIT_NEEDS_PERSON = 2  # a person has to act (password, terms, app version, settings...): every run until fixed


def _target_line(
    prefix: str, uploaded: int, gap_filled: int, age: float | None, dry: bool, implausible: int = 0
) -> str:
    if uploaded:
        verb = "would upload" if dry else "uploaded"
        text = f"{verb} {uploaded} reading{'s' if uploaded != 1 else ''}"
        if gap_filled:
            text += f" ({gap_filled} from the history)"
    else:
        text = "nothing new to upload"
    if age is not None:
        text += f"; newest reading {age_text(age)} old"
    if implausible:  # never sent: a value no sensor gives or a date outside the plausible window
        text += f"; {implausible} implausible reading{'s' if implausible != 1 else ''} dropped"
    return prefix + text


def _print_readings(sinks: list[CollectingSink], out: TextIO) -> None:
    for sink in sinks:
        for reading in sorted(sink.readings, key=lambda r: r.epoch_ms):
            out.write(
                f"  {utc_text(reading.epoch_s, seconds=True)}  {reading.sgv:>3} mg/dL  "
                f"{reading.direction:<14} {reading.source}\n"
            )
        for serial, activated in sink.sensor_starts:
            out.write(f"  {utc_text(activated, seconds=True)}  Sensor Start treatment (sensor {serial})\n")


# A corrected password lifts the bad-password block by itself (the block is tied to the credentials it
# was recorded for); --reset-login is only for trying the very same password again.
CORRECTED_PASSWORD = (
    " Correct LINK_UP_PASSWORD: the next run tries the new password once. To try the same password again, "
    f"run `{PROG} sync --once --reset-login`."
)


def _fix_hint(reason: str, args: argparse.Namespace) -> str:
    """What to add to a failure a person fixes on this machine (not with --secret-id: the secret's new
    version is the fix there)."""
    if args.secret_id:
        return ""
    if reason == "bad_credentials":
        return CORRECTED_PASSWORD
    if reason == "action_required":
        return f" After fixing it, run `{PROG} sync --once --reset-login` once."
    return ""


@dataclass
class _Failing:
    """How a failed run is told: one JSON line, or the other people's results and the message on stderr."""

    args: argparse.Namespace
    out: TextIO
    err: TextIO
    store: StateStore | None = None  # set as soon as it is open: a missing table is named

    def fail(self, message: str, reason: str, needs_person: bool = False, report: RunReport | None = None) -> int:
        message += _fix_hint(reason, self.args)
        if self.args.json:
            summary: dict[str, object] = {"error": reason, "message": message, "needs_person": needs_person}
            if report is not None and report.targets:
                summary["uploaded"] = report.uploaded
                summary["targets"] = [t.as_dict() for t in report.targets]
            self.out.write(json.dumps(summary) + "\n")
        else:
            # With TARGETS, one person's failure does not undo the others' uploads: say what they got.
            for t in report.targets if report is not None else []:
                if t.error is None:
                    line = _target_line(
                        f"patient {t.patient}: ", t.uploaded, t.gap_filled, t.newest_reading_age_s, self.args.dry_run
                    )
                    self.out.write(line + "\n")
            self.err.write(f"{PROG}: failed: {message}\n")
        return EXIT_NEEDS_PERSON if needs_person else EXIT_FAILED

    def error(self, exc: LinkupSyncError, report: RunReport | None = None) -> int:
        table = missing_table(exc, self.store)
        if table is not None:
            return self.fail(table.message, "state_table_not_found", needs_person=True)
        return self.fail(exc.message, exc.reason, exc.needs_person, report)

    def aws(self, exc: Exception) -> int:
        """An AWS failure a person can fix (credentials, region, a missing secret or table); else re-raise."""
        text = describe_aws_failure(exc)
        if text is None:
            raise exc
        return self.fail(text, "aws")


def _open(
    args: argparse.Namespace, env: Mapping[str, str], clock: Callable[[], float], out: TextIO, failing: _Failing
) -> tuple[Settings, StateStore, CredentialSource]:
    """Settings, state and credentials; --reset-login clears the stored login block first."""
    from linkup_sync.state.model import account_key

    settings = Settings.from_env(env, need_aws=False)
    store = failing.store = state_store(args, clock)
    credentials = credential_source(args.secret_id, env)
    if args.reset_login:
        key = account_key(credentials.get().username)
        cleared = reset_login(store, key)
        if not args.json and not args.quiet:
            out.write(("cleared " + "; ".join(cleared) if cleared else "no stored login block to clear") + "\n")
    return settings, store, credentials


def _echo_logs(shown_message: str, messages: list[str], err: TextIO) -> None:
    """The run's log messages before its failure, each once, and not the failure's own message again."""
    shown = {shown_message}
    for message in messages:
        if message not in shown:
            err.write(f"{PROG}: {message}\n")
            shown.add(message)


def _print_json(report: RunReport, sinks: list[CollectingSink], dry_run: bool, out: TextIO) -> int:
    summary = report.as_dict()
    if dry_run:
        summary["dry_run"] = True
        summary["would_upload"] = [
            {
                "date": r.epoch_ms,
                "dateString": r.iso_utc,
                "sgv": r.sgv,
                "direction": r.direction,
                "source": r.source,
            }
            for s in sinks
            for r in sorted(s.readings, key=lambda r: r.epoch_ms)
        ]
    out.write(json.dumps(summary) + "\n")
    return EXIT_NEEDS_PERSON if report.skipped and report.needs_person else EXIT_OK


def _print_skipped(report: RunReport, args: argparse.Namespace, out: TextIO) -> int:
    text = report.skipped_message or report.skipped or ""
    if report.skipped in ("bad_credentials", "action_required"):
        # A skipped run is told the fix of a failed one; with --secret-id, the secret's new version is one too.
        text += (
            f" After fixing it, run `{PROG} sync --once --reset-login` once (or change the secret)."
            if args.secret_id
            else _fix_hint(report.skipped, args)
        )
    if not args.quiet or report.needs_person:  # --quiet: only what a person has to act on
        out.write(f"skipped: {text}\n")
    # Non-zero on every run while the breaker holds, not only on the first: cron checks the status.
    return EXIT_NEEDS_PERSON if report.needs_person else EXIT_OK


def _print_summary(report: RunReport, args: argparse.Namespace, out: TextIO) -> None:
    targets = report.targets
    lines = []
    if len(targets) > 1:
        for t in targets:
            lines.append(
                _target_line(
                    f"patient {t.patient}: ",
                    t.uploaded,
                    t.gap_filled,
                    t.newest_reading_age_s,
                    args.dry_run,
                    t.implausible,
                )
            )
    else:
        lines.append(
            _target_line(
                "", report.uploaded, report.gap_filled, report.newest_reading_age_s, args.dry_run, report.implausible
            )
        )
    if report.logins:
        lines[-1] += " (logged in to LibreLink Up)"
    if args.dry_run:
        lines.append("dry run: nothing was sent to Nightscout and nothing was recorded as uploaded")
    if not args.quiet or args.dry_run:
        out.write("\n".join(lines) + "\n")


def _print_report(
    report: RunReport,
    sinks: list[CollectingSink],
    warnings: list[str],
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
) -> int:
    if args.json:
        return _print_json(report, sinks, args.dry_run, out)
    for message in warnings:
        err.write(f"{PROG}: {message}\n")
    if report.skipped:
        return _print_skipped(report, args, out)
    if args.dry_run:
        _print_readings(sinks, out)
    _print_summary(report, args, out)
    return 0


def cmd_sync(
    args: argparse.Namespace, env: Mapping[str, str], clock: Callable[[], float], out: TextIO, err: TextIO
) -> int:
    from linkup_sync.runtime import Dependencies, run_once

    failing = _Failing(args, out, err)
    try:
        settings, store, credentials = _open(args, env, clock, out, failing)
    except LinkupSyncError as exc:
        return failing.error(exc)
    except Exception as exc:
        return failing.aws(exc)

    if settings.allow_http and not args.quiet:
        warn_plain_http(credentials, err)
    sinks: list[CollectingSink] = []
    deps = Dependencies(
        settings=settings, store=NoRecordStore(store) if args.dry_run else store, credentials=credentials, clock=clock
    )
    if args.dry_run:
        deps.sink_factory = collecting_factory(sinks, check_url=True, read_back=True)
    with package_logs(args.verbose, err) as logs:
        try:
            report = run_once(deps)
        except LinkupSyncError as exc:
            _echo_logs(exc.message, logs.messages, err)
            return failing.error(exc, exc.report)
        except Exception as exc:
            return failing.aws(exc)
    warnings = [m for m in dict.fromkeys(logs.messages) if not m.startswith("run skipped")]
    return _print_report(report, sinks, warnings, args, out, err)


def warn_plain_http(credentials: CredentialSource, err: TextIO) -> None:
    """NIGHTSCOUT_ALLOW_HTTP: say, for each http:// Nightscout, that the secret's hash travels unencrypted."""
    from linkup_sync.nightscout.url import HTTP_WARNING, normalize_nightscout_url, plain_http_to_private

    with contextlib.suppress(LinkupSyncError, ValueError):
        for target in credentials.get().targets:
            url = normalize_nightscout_url(target.nightscout_url, allow_http=True)
            if plain_http_to_private(url):
                err.write(f"{PROG}: warning: {HTTP_WARNING.format(url=url)}\n")
