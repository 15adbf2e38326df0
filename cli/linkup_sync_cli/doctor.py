"""`linkup-sync doctor`: checks a set-up step by step and prints ✔ or ✘ with the fix.

The LibreLink Up part runs the Lambda function's own code path (runtime.run_once) with a Nightscout
stand-in that only collects and a store that records no upload, so it honours the stored circuit
breakers and reuses a stored login exactly as the function would. The store also refuses a second
login, so one invocation logs in at most once. One extra LibreLink Up request lists the people the
account follows. The Nightscout checks (which store nothing in Nightscout) are in doctor_nightscout.py,
the ✔/✘ lines in reporter.py.

Nothing printed here contains a password, a token, a JWT, an Account-Id or a hash of them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TextIO

from linkup_sync.errors import (
    ConfigError,
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpError,
    LinkUpLocked,
    LinkUpNoConnections,
    LinkUpPatientNotFound,
    LinkUpRedirectLoop,
    LinkupSyncError,
    LinkUpUnauthorized,
    LinkUpVersionRejected,
    StateUnavailable,
)
from linkup_sync.librelinkup.regions import DEFAULT_URL_TEMPLATE
from linkup_sync.secret_format import SECRET_KEYS
from linkup_sync.settings import Settings

from .adapters import (
    CollectingSink,
    FixedCredentials,
    NoRecordStore,
    collecting_factory,
    credential_source,
    describe_aws_failure,
    missing_table,
    reset_login,
    state_label,
    state_store,
)
from .doctor_nightscout import check_nightscout
from .output import PROG, age_text, package_logs, utc_text
from .reporter import Reporter

if TYPE_CHECKING:
    from linkup_sync.model import Connection, Credentials, Ticket
    from linkup_sync.ports import StateStore
    from linkup_sync.report import RunReport, TargetReport
    from linkup_sync.runtime import Dependencies
    from linkup_sync.state.model import AccountState

AWS_HINT = (
    "Check the AWS credentials (aws configure, AWS_PROFILE) and the region: set AWS_REGION (or "
    "AWS_DEFAULT_REGION) to the stack's region, or pass the secret's full ARN, which names it."
)
STALE_AFTER_S = 30 * 60  # the stale-data alarm's default (template parameter StaleAfterMinutes)
DOCTOR_DEADLINE_S = 60.0
LOGIN_ERRORS = (LinkUpBadCredentials, LinkUpActionRequired, LinkUpLocked, LinkUpRedirectLoop, LinkUpUnauthorized)


# --- settings and credentials -----------------------------------------------------------------------


def _check_settings(r: Reporter, env: Mapping[str, str]) -> Settings | None:
    r.start("Settings")
    try:
        settings = Settings.from_env(env, need_aws=False)
    except ConfigError as exc:
        r.fail("Settings", "fix these environment variables", exc.problems)
        return None
    parts = [
        f"region {settings.region.upper()}",
        f"app version {'auto' if settings.version_auto else settings.version}",
        f"Nightscout API {'v3' if settings.api_v3 else 'v1'}",
    ]
    if settings.connection:
        parts.append(f"LINK_UP_CONNECTION {settings.connection}")
    if settings.api_url_template != DEFAULT_URL_TEMPLATE:
        parts.append(f"LibreLink Up at {settings.api_url_template}")
    r.ok("Settings", ", ".join(parts))
    return settings


def _check_credentials(r: Reporter, args: argparse.Namespace, env: Mapping[str, str]) -> Credentials | None:
    r.start("Credentials")
    source = credential_source(args.secret_id, env)
    try:
        creds = source.get()
    except ConfigError as exc:
        r.fail("Credentials", exc.message.splitlines()[0].rstrip(":"), exc.problems)
        return None
    except Exception as exc:
        text = describe_aws_failure(exc)
        if text is None:
            raise
        r.fail("Credentials", text, [AWS_HINT])
        return None
    if args.secret_id:
        summary = f"read from the secret {args.secret_id}"
    else:
        summary = ", ".join(SECRET_KEYS[:-1]) + f" and {SECRET_KEYS[-1]} are set (environment variables)"
    if len(creds.targets) > 1:
        summary += f"; {len(creds.targets)} Nightscout targets"
    r.ok("Credentials", summary)
    return creds


# --- LibreLink Up -----------------------------------------------------------------------------------


class _DoctorStore(NoRecordStore):
    """Records no upload, and allows one login per invocation: the second acquire of the lock fails."""

    def __init__(self, inner: StateStore) -> None:
        super().__init__(inner)
        self.logins = 0

    def acquire_login_lock(self, key: str, now: float, seconds: int) -> bool:
        if self.logins:
            return False
        taken = self.inner.acquire_login_lock(key, now, seconds)
        self.logins += int(taken)
        return taken


def _reset_hint(args: argparse.Namespace) -> str:
    return f"`{PROG} doctor --reset-login`" + (" (with the same options)" if args.secret_id or args.table else "")


def _report_skip(r: Reporter, report: RunReport, guard: _DoctorStore, args: argparse.Namespace, label: str) -> None:
    """A stored circuit breaker kept the run from LibreLink Up: say which, and how it clears."""
    reason = report.skipped or ""
    message = report.skipped_message or reason
    if reason == "bad_credentials":
        creds_where = (
            "in the secret (its new version clears this by itself)"
            if args.secret_id
            else ("LINK_UP_USERNAME / LINK_UP_PASSWORD")
        )
        r.fail(
            "LibreLink Up login",
            message,
            [
                f"Recorded in {label} when LibreLink Up rejected the password. To protect the account from a "
                "lockout, no login is tried again with the same credentials.",
                f"Fix: correct {creds_where}, then run {_reset_hint(args)}.",
            ],
        )
    elif reason == "locked":
        r.fail(
            "LibreLink Up login",
            message,
            [
                "Fix: wait until the lock has passed. If it happens again, another app or device is trying an old "
                "password for this account: update or remove it."
            ],
        )
    elif reason == "action_required":
        r.fail(
            "LibreLink Up login",
            message,
            [f"Fix: after doing what the LibreLink Up app asks for, run {_reset_hint(args)} to check again at once."],
        )
    elif reason == "version":
        r.fail(
            "LibreLink Up app version",
            message,
            ["Fix: set LINK_UP_VERSION to the version LibreLink Up asks for, or to 'auto'."],
        )
    elif reason == "login_in_progress":
        if guard.logins:
            r.fail(
                "LibreLink Up login",
                "LibreLink Up did not accept the new login right after it was made; "
                "doctor logs in only once per run. Try again in a few minutes.",
            )
        else:
            r.fail(
                "LibreLink Up login", message, [f"Fix: wait a minute (the lock is in {label}) and run doctor again."]
            )
    else:  # a back-off after rate limits, edge blocks, maintenance or server errors
        r.fail(
            "LibreLink Up",
            message,
            [
                "This clears by itself; nothing to change unless it lasts for hours. To try again at once, run "
                f"{_reset_hint(args)}."
            ],
        )


def _patients_used(
    settings: Settings, creds: Credentials, account: AccountState, connections: list[Connection]
) -> set[str]:
    used = {t.patient_id for t in creds.targets if t.patient_id}
    if any(t.patient_id is None for t in creds.targets):
        chosen = settings.connection or account.patient_id or (connections[0].patient_id if connections else None)
        if chosen:
            used.add(chosen)
    return used


def _connection_lines(connections: list[Connection], used: set[str]) -> list[str]:
    return [
        f"{c.patient_id}  {c.initials or '?':<3}" + ("  (synced)" if c.patient_id in used else "") for c in connections
    ]


_LATER = ("Connections", "Newest reading")


def _run_through(
    r: Reporter,
    args: argparse.Namespace,
    settings: Settings,
    creds: Credentials,
    guard: _DoctorStore,
    clock: Callable[[], float],
    err: TextIO,
) -> tuple[RunReport | None, LinkupSyncError | None, Dependencies]:
    """One run of the function's own code path, into a Nightscout stand-in that only collects."""
    from linkup_sync.runtime import Dependencies, run_once

    sinks: list[CollectingSink] = []
    deps = Dependencies(
        settings=settings, store=guard, credentials=FixedCredentials(creds), clock=clock, deadline_s=DOCTOR_DEADLINE_S
    )
    deps.sink_factory = collecting_factory(sinks, check_url=False)

    r.start("LibreLink Up login")
    report: RunReport | None = None
    error: LinkupSyncError | None = None
    with package_logs(args.verbose, err):
        try:
            report = run_once(deps)
        except LinkupSyncError as exc:
            error = exc
            report = exc.report
    return report, error, deps


def _login_fix(args: argparse.Namespace, error: LinkupSyncError | None) -> list[str]:
    if isinstance(error, LinkUpBadCredentials):
        return [
            "Fix: "
            + (
                "correct them in the secret; its new version allows one new login."
                if args.secret_id
                else "correct LINK_UP_USERNAME / LINK_UP_PASSWORD (no login is tried again with "
                f"the same ones), then run {_reset_hint(args)}."
            )
        ]
    if isinstance(error, LinkUpActionRequired):
        return [f"Then run {_reset_hint(args)} to check again at once."]
    return []


def _report_login(r: Reporter, settings: Settings, ticket: Ticket, guard: _DoctorStore, label: str) -> None:
    until = utc_text(ticket.expires)[:10]
    if guard.logins:
        r.ok(
            "LibreLink Up login",
            f"logged in (region {ticket.region.upper()}); the login is valid until {until} and is kept in {label}",
        )
    else:
        r.ok(
            "LibreLink Up login",
            f"reused the stored login (region {ticket.region.upper()}, valid until {until}); no new login was needed",
        )
    if ticket.region != settings.region:
        region = ticket.region.upper()
        r.fail(
            "LINK_UP_REGION",
            f"your account is in region {region}: set LINK_UP_REGION={region} (it is {settings.region.upper()})",
            [
                f"LibreLink Up redirected the login there. linkup-sync followed and remembers it in {label}, but "
                "with the right setting a new installation, or one that lost its state, starts in the right place."
            ],
        )


def _check_login(
    r: Reporter,
    args: argparse.Namespace,
    settings: Settings,
    run: tuple[RunReport | None, LinkupSyncError | None],
    ticket: Ticket | None,
    guard: _DoctorStore,
    label: str,
) -> Ticket | None:
    """The login line; the usable ticket, or None when the checks after it cannot run."""
    report, error = run
    if report is not None and report.skipped:
        _report_skip(r, report, guard, args, label)
        why = "needs an accepted app version" if report.skipped == "version" else "needs a LibreLink Up login"
        for title in _LATER:
            r.skip(title, why)
        return None
    if isinstance(error, LOGIN_ERRORS) or ticket is None:
        text = error.message if error is not None else "LibreLink Up gave no login."
        r.fail("LibreLink Up login", text, _login_fix(args, error))
        for title in _LATER:
            r.skip(title, "needs a LibreLink Up login")
        return None
    _report_login(r, settings, ticket, guard, label)
    return ticket


def _check_run_error(r: Reporter, error: LinkupSyncError | None) -> bool:
    """The run's failure after the login, if any; False when the checks after it cannot run."""
    if isinstance(error, LinkUpVersionRejected):
        needed = error.minimum_version
        fix = (
            [f"Fix, from the command line: set the environment variable LINK_UP_VERSION={needed}."]
            if needed and needed.startswith("4.")
            else []
        )
        r.fail("LibreLink Up app version", error.message, fix)
        for title in _LATER:
            r.skip(title, "needs an accepted app version")
        return False
    if isinstance(error, LinkUpNoConnections):
        r.fail("Connections", error.message)
        r.skip("Newest reading", "nobody is followed")
        return False
    if error is not None and not isinstance(error, LinkUpPatientNotFound):
        title = "LibreLink Up" if isinstance(error, LinkUpError) else "Sync"
        r.fail(title, error.message)
        r.skip("Newest reading", "LibreLink Up sent no readings")
        return False
    return True


def _report_connections(
    r: Reporter, settings: Settings, creds: Credentials, connections: list[Connection], lines: list[str]
) -> None:
    if not connections:
        r.fail("Connections", LinkUpNoConnections().message)
        return
    count = len(connections)
    summary = f"this account follows {count} {'person' if count == 1 else 'people'}"
    if count > 1 and not settings.connection and all(t.patient_id is None for t in creds.targets):
        lines.append(
            "It follows several people, so linkup-sync uses the first one. To choose, set "
            "LINK_UP_CONNECTION to one of the patientIds above."
        )
    r.ok("Connections", summary, lines)


def _check_connections(
    r: Reporter,
    settings: Settings,
    creds: Credentials,
    account: AccountState,
    ticket: Ticket,
    error: LinkupSyncError | None,
    deps: Dependencies,
) -> bool:
    """One more request: whom does the account follow (ids and initials only, to fill LINK_UP_CONNECTION)?
    False when the newest reading cannot be checked."""
    from linkup_sync.librelinkup.client import LinkUpClient

    version = account.version if settings.version_auto and account.version else settings.version
    client = LinkUpClient(url_template=settings.api_url_template, version=version, pool=deps.pool)
    r.start("Connections")
    try:
        connections = client.connections(ticket)
    except LinkUpError as exc:
        r.fail("Connections", exc.message)
        return True
    used = _patients_used(settings, creds, account, connections)
    lines = _connection_lines(connections, used)
    if isinstance(error, LinkUpPatientNotFound):
        r.fail("Connections", error.message, lines)
        r.skip("Newest reading", "the patient is not followed")
        return False
    _report_connections(r, settings, creds, connections, lines)
    return True


def _report_newest(r: Reporter, title: str, target: TargetReport) -> None:
    age = target.newest_reading_age_s
    if age is None and target.implausible:
        r.fail(
            title,
            f"LibreLink Up sent {target.implausible} reading{'s' if target.implausible != 1 else ''} but none is "
            "plausible (dated in the future or more than a day ago, or a value no sensor gives), so none "
            "is sent. Check the date and time of the wearer's phone.",
        )
    elif age is None:
        r.fail(
            title,
            "LibreLink Up has no reading for this person right now. Is a sensor running, and is the "
            "LibreLink app on the wearer's phone open and signed in?",
        )
    elif age > STALE_AFTER_S:
        r.fail(
            title,
            f"{age_text(age)} old. The wearer's phone has not sent readings to LibreLink Up since "
            "then: it is off, out of range of the sensor, or the LibreLink app was closed, or the "
            "sensor has ended. Nothing to change in linkup-sync.",
        )
    else:
        r.ok(title, f"{age_text(age)} old")


def _check_linkup(
    r: Reporter,
    args: argparse.Namespace,
    settings: Settings,
    creds: Credentials,
    store: StateStore,
    clock: Callable[[], float],
    err: TextIO,
) -> None:
    from linkup_sync.state.model import account_key

    key = account_key(creds.username)
    label = state_label(store)
    if args.reset_login:
        cleared = reset_login(store, key)
        r.note("--reset-login: cleared " + "; ".join(cleared) if cleared else "--reset-login: nothing to clear")
    guard = _DoctorStore(store)
    report, error, deps = _run_through(r, args, settings, creds, guard, clock, err)
    account = store.load(key).account
    now = clock()
    stored = account.ticket if account.ticket is not None and account.ticket.usable_at(now) else None
    ticket = _check_login(r, args, settings, (report, error), stored, guard, label)
    if ticket is None or not _check_run_error(r, error):
        return
    if not _check_connections(r, settings, creds, account, ticket, error, deps):
        return
    assert report is not None
    for t in report.targets:
        title = "Newest reading" + (f" (patient {t.patient})" if len(report.targets) > 1 else "")
        _report_newest(r, title, t)


# --- the command ------------------------------------------------------------------------------------


def run_doctor(
    args: argparse.Namespace, env: Mapping[str, str], clock: Callable[[], float], out: TextIO, err: TextIO
) -> int:
    r = Reporter(out)
    settings = _check_settings(r, env)
    creds = _check_credentials(r, args, env)
    needs_person = False
    if settings is not None and creds is not None:
        store: StateStore | None = None
        try:
            store = state_store(args, clock)
            _check_linkup(r, args, settings, creds, store, clock, err)
        except ConfigError as exc:  # e.g. a damaged state file
            r.fail("LibreLink Up", exc.message.splitlines()[0].rstrip(":"), exc.problems)
        except StateUnavailable as exc:
            missing = missing_table(exc, store)
            if missing is None:
                r.fail("State", exc.message)
            else:  # not a passing outage: a person gives the right table or region
                r.fail("State table", missing.problems[0], missing.problems[1:])
                needs_person = True
        except Exception as exc:
            text = describe_aws_failure(exc)
            if text is None:
                raise
            r.fail("LibreLink Up", text, [AWS_HINT])
    else:
        r.skip("LibreLink Up", "needs valid settings and credentials")
    if creds is not None:
        from linkup_sync.runtime import uses_api_v3

        default_v3 = settings.api_v3 if settings is not None else False
        sensor_start = settings is not None and settings.sensor_start
        allow_http = settings is not None and settings.allow_http
        for i, target in enumerate(creds.targets, start=1):
            suffix = f" ({i} of {len(creds.targets)})" if len(creds.targets) > 1 else ""
            api_v3 = uses_api_v3(target, default_v3)
            check_nightscout(r, target, api_v3, sensor_start, clock, suffix, allow_http)
    else:
        r.skip("Nightscout", "needs the credentials")
    out.write("\n")
    if r.failed:
        out.write(
            f"{r.failed} of {r.passed + r.failed} checks failed. Fix the {r.marks[False].strip()} lines "
            f"above, then run `{PROG} doctor` again.\n"
        )
        return 2 if needs_person else 1
    out.write(f"All {r.passed} checks passed.\n")
    return 0
