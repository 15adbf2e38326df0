"""`linkup-sync doctor`: checks a set-up step by step and prints ✔ or ✘ with the fix.

The LibreLink Up part runs the Lambda function's own code path (runtime.run_once) with a Nightscout
stand-in that only collects and a store that records no upload, so it honours the stored circuit
breakers and reuses a stored login exactly as the function would. The store also refuses a second
login, so one invocation logs in at most once. One extra LibreLink Up request lists the people the
account follows.

The Nightscout part stores nothing either: `GET /api/v1/status.json` (anonymous, so a wrong token
costs no AUTH_FAIL_DELAY there) for reachability and version, then `POST /api/v1/entries/preview.json`
(API v1) or the JWT exchange (API v3) to see whether the token may upload.

Nothing printed here contains a password, a token, a JWT, an Account-Id or a hash of them.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote, urlsplit

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
    NightscoutUnauthorized,
    NightscoutUnreachable,
)
from linkup_sync.librelinkup.regions import DEFAULT_URL_TEMPLATE
from linkup_sync.settings import SECRET_KEYS, Settings

from .main import (
    PROG,
    CollectingSink,
    FixedCredentials,
    NoRecordStore,
    age_text,
    collecting_factory,
    credential_source,
    describe_aws_failure,
    package_logs,
    reset_login,
    state_label,
    state_store,
    utc_text,
)

if TYPE_CHECKING:
    import urllib3

    from linkup_sync.http import HttpResult
    from linkup_sync.ports import Connection, Credentials, Target
    from linkup_sync.state.model import AccountState, StateStore
    from linkup_sync.sync import RunReport

AWS_HINT = (
    "Check the AWS credentials (aws configure, AWS_PROFILE) and the region: set AWS_REGION (or "
    "AWS_DEFAULT_REGION) to the stack's region, or pass the secret's full ARN, which names it."
)
STALE_AFTER_S = 30 * 60  # the stale-data alarm's default (template parameter StaleAfterMinutes)
DOCTOR_DEADLINE_S = 60.0
WIDTH = 100
LOGIN_ERRORS = (LinkUpBadCredentials, LinkUpActionRequired, LinkUpLocked, LinkUpRedirectLoop, LinkUpUnauthorized)
V1_PERMISSIONS = ("api:entries:create", "api:entries:read")  # nightscout/v1.py, POST /api/v1/entries
V3_PERMISSIONS = ("api:entries:create", "api:entries:read", "api:entries:update")
TREATMENTS_V1 = ("api:treatments:create", "api:treatments:read")  # nightscout/v1.py, post_sensor_start
TREATMENTS_V3 = ("api:treatments:create", "api:treatments:update")  # nightscout/v3.py, TREATMENTS_ROLE


# --- output -----------------------------------------------------------------------------------------


class Reporter:
    """One line per check, flushed at once. On a terminal a "… check" line shows while a check runs."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        try:
            self.tty = out.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        try:
            "✔✘–…".encode(getattr(out, "encoding", None) or "utf-8")
            self.marks = {True: "✔", False: "✘", None: "–"}
            self.busy = "…"
        except (UnicodeEncodeError, LookupError):
            self.marks = {True: "OK  ", False: "FAIL", None: "--  "}
            self.busy = "..."
        self.passed = 0
        self.failed = 0
        self._pending = False

    def _write(self, text: str) -> None:
        if self._pending:
            self.out.write("\r\x1b[K")
            self._pending = False
        self.out.write(text)
        self.out.flush()

    def start(self, title: str) -> None:
        if self.tty:
            self._write(f"{self.busy} {title} ...")
            self._pending = True

    def line(self, ok: bool | None, title: str, summary: str = "", details: Iterable[str] = ()) -> None:
        head = f"{self.marks[ok]} {title}" + (f": {summary}" if summary else "")
        lines = [_wrap(head, "", "    ")]
        lines += [_wrap(d, "    ", "      ") for d in details]
        self._write("\n".join(lines) + "\n")
        if ok is True:
            self.passed += 1
        elif ok is False:
            self.failed += 1

    def ok(self, title: str, summary: str = "", details: Iterable[str] = ()) -> None:
        self.line(True, title, summary, details)

    def fail(self, title: str, summary: str, details: Iterable[str] = ()) -> None:
        self.line(False, title, summary, details)

    def skip(self, title: str, why: str) -> None:
        self.line(None, title, f"not checked ({why})")

    def note(self, text: str) -> None:
        self._write(_wrap(text, "  ", "  ") + "\n")


def _wrap(text: str, first: str, rest: str) -> str:
    return textwrap.fill(
        text, WIDTH, initial_indent=first, subsequent_indent=rest, break_long_words=False, break_on_hyphens=False
    )


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


def _check_linkup(
    r: Reporter,
    args: argparse.Namespace,
    settings: Settings,
    creds: Credentials,
    store: StateStore,
    clock: Callable[[], float],
    err: TextIO,
) -> None:
    from linkup_sync.librelinkup.client import LinkUpClient
    from linkup_sync.runtime import Dependencies, run_once
    from linkup_sync.state.model import account_key

    key = account_key(creds.username)
    label = state_label(store)
    if args.reset_login:
        cleared = reset_login(store, key)
        r.note("--reset-login: cleared " + "; ".join(cleared) if cleared else "--reset-login: nothing to clear")
    guard = _DoctorStore(store)
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
            report = getattr(exc, "report", None)
    account = store.load(key).account
    now = clock()
    ticket = account.ticket if account.ticket is not None and account.ticket.usable_at(now) else None
    later = ("Connections", "Newest reading")

    if report is not None and report.skipped:
        _report_skip(r, report, guard, args, label)
        why = "needs an accepted app version" if report.skipped == "version" else "needs a LibreLink Up login"
        for title in later:
            r.skip(title, why)
        return
    if isinstance(error, LOGIN_ERRORS) or ticket is None:
        text = error.message if error is not None else "LibreLink Up gave no login."
        details = []
        if isinstance(error, LinkUpBadCredentials):
            details.append(
                "Fix: "
                + (
                    "correct them in the secret; its new version allows one new login."
                    if args.secret_id
                    else "correct LINK_UP_USERNAME / LINK_UP_PASSWORD (no login is tried again with "
                    f"the same ones), then run {_reset_hint(args)}."
                )
            )
        elif isinstance(error, LinkUpActionRequired):
            details.append(f"Then run {_reset_hint(args)} to check again at once.")
        r.fail("LibreLink Up login", text, details)
        for title in later:
            r.skip(title, "needs a LibreLink Up login")
        return

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

    if isinstance(error, LinkUpVersionRejected):
        needed = error.minimum_version
        fix = (
            [f"Fix, from the command line: set the environment variable LINK_UP_VERSION={needed}."]
            if needed and needed.startswith("4.")
            else []
        )
        r.fail("LibreLink Up app version", error.message, fix)
        for title in later:
            r.skip(title, "needs an accepted app version")
        return
    if isinstance(error, LinkUpNoConnections):
        r.fail("Connections", error.message)
        r.skip("Newest reading", "nobody is followed")
        return
    if error is not None and not isinstance(error, LinkUpPatientNotFound):
        title = "LibreLink Up" if isinstance(error, LinkUpError) else "Sync"
        r.fail(title, error.message)
        r.skip("Newest reading", "LibreLink Up sent no readings")
        return

    # One more request: whom does the account follow (ids and initials only, to fill LINK_UP_CONNECTION)?
    version = account.version if settings.version_auto and account.version else settings.version
    client = LinkUpClient(url_template=settings.api_url_template, version=version, pool=deps.pool)
    r.start("Connections")
    try:
        connections = client.connections(ticket)
    except LinkUpError as exc:
        r.fail("Connections", exc.message)
        connections = []
    else:
        used = _patients_used(settings, creds, account, connections)
        lines = _connection_lines(connections, used)
        if isinstance(error, LinkUpPatientNotFound):
            r.fail("Connections", error.message, lines)
            r.skip("Newest reading", "the patient is not followed")
            return
        if not connections:
            r.fail("Connections", LinkUpNoConnections().message)
        else:
            count = len(connections)
            summary = f"this account follows {count} {'person' if count == 1 else 'people'}"
            if count > 1 and not settings.connection and all(t.patient_id is None for t in creds.targets):
                lines.append(
                    "It follows several people, so linkup-sync uses the first one. To choose, set "
                    "LINK_UP_CONNECTION to one of the patientIds above."
                )
            r.ok("Connections", summary, lines)

    assert report is not None
    targets = report.targets
    for t in targets:
        title = "Newest reading" + (f" (patient {t.patient})" if len(targets) > 1 else "")
        age = t.newest_reading_age_s
        if age is None:
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


# --- Nightscout -------------------------------------------------------------------------------------


def _send(
    pool: urllib3.PoolManager,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> HttpResult:
    import urllib3

    from linkup_sync.http import send

    return send(
        pool,
        method,
        url,
        headers=dict(headers or {"Accept": "application/json"}),
        body=body,
        timeout=urllib3.Timeout(connect=5.0, read=15.0),
    )


def _json(result: HttpResult) -> Any:
    try:
        return json.loads(result.data)
    except (ValueError, UnicodeDecodeError):
        return None


def _redirect_text(base: str, location: str) -> str:
    target = urlsplit(location)
    if target.scheme.lower() == "https" and base.startswith("http://"):
        return "the site redirects to https: fix NIGHTSCOUT_URL to start with https://."
    where = f" ({target.scheme}://{target.hostname})" if target.scheme and target.hostname else ""
    return (
        f"the site redirects to another address{where}: put the final https:// address of the site into NIGHTSCOUT_URL."
    )


def _not_nightscout(base: str, what: str) -> str:
    return (
        f"the answer ({what}) is not what Nightscout sends, so NIGHTSCOUT_URL probably does not point to a "
        f"Nightscout site (or a proxy or login page is in front of it). Open {base}/api/v1/status.json in a "
        "browser to check."
    )


def _probe_server(r: Reporter, title: str, base: str, pool: urllib3.PoolManager) -> bool:
    """Reachability and version, anonymously. True when the site answered like Nightscout."""
    from linkup_sync.http import TransportError

    r.start(title)
    try:
        result = _send(pool, "GET", base + "/api/v1/status.json")
        version: object = None
        if result.status == 200:
            parsed = _json(result)
            if not isinstance(parsed, dict) or "version" not in parsed:
                r.fail(title, _not_nightscout(base, f"HTTP 200, {result.content_type or 'no content type'}"))
                return False
            version = parsed.get("version")
            r.ok(title, f"Nightscout {version} answers at {base}")
            return True
        if result.status in (401, 403):
            # AUTH_DEFAULT_ROLES=denied: the status needs a login; /api/v3/version is public (Nightscout >= 13)
            v3 = _send(pool, "GET", base + "/api/v3/version")
            parsed = _json(v3) if v3.status == 200 else None
            info = parsed.get("result") if isinstance(parsed, dict) else None
            version = info.get("version") if isinstance(info, dict) else None
            shown = f"Nightscout {version}" if version else "Nightscout (its version is not public)"
            r.ok(title, f"{shown} answers at {base}")
            return True
        if result.status in (301, 302, 303, 307, 308):
            r.fail(title, _redirect_text(base, result.headers.get("location", "")))
        elif result.status == 404:
            r.fail(
                title,
                "no Nightscout at this address (HTTP 404 for /api/v1/status.json). NIGHTSCOUT_URL must be "
                "the address that shows the glucose chart in a browser.",
            )
        elif result.status >= 500:
            r.fail(
                title,
                f"the site answered HTTP {result.status}: it is down or still starting (some hosts "
                "put idle sites to sleep). Open it in a browser, then run doctor again.",
            )
        else:
            r.fail(title, _not_nightscout(base, f"HTTP {result.status}"))
    except TransportError as exc:
        r.fail(
            title,
            NightscoutUnreachable(exc.detail).message,
            [f"Fix: check NIGHTSCOUT_URL and that the site is up: open {base} in a browser."],
        )
    return False


def _permits(granted: str, wanted: str) -> bool:
    """Shiro-style permission match, as Nightscout does it: '*' parts, missing parts mean everything."""
    have, need = granted.split(":"), wanted.split(":")
    for i, part in enumerate(need):
        if i >= len(have):
            return True
        if have[i] != "*" and part not in have[i].split(","):
            return False
    return all(p == "*" for p in have[len(need) :])


def _check_token_v1(
    r: Reporter, title: str, base: str, token: str, pool: urllib3.PoolManager, clock: Callable[[], float]
) -> bool:
    from linkup_sync.http import TransportError
    from linkup_sync.nightscout.auth import api_secret_header
    from linkup_sync.readings import Reading

    now_ms = int(clock() // 60 * 60 * 1000)
    sample = Reading(epoch_ms=now_ms, sgv=100, direction="Flat", source="current")
    entry = {
        "type": "sgv",
        "sgv": sample.sgv,
        "date": sample.epoch_ms,
        "dateString": sample.iso_utc,
        "direction": sample.direction,
        "device": "linkup-sync",
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json", "api-secret": api_secret_header(token)}
    r.start(title)
    try:
        result = _send(
            pool, "POST", base + "/api/v1/entries/preview.json", headers=headers, body=json.dumps([entry]).encode()
        )
    except TransportError as exc:
        r.fail(title, NightscoutUnreachable(exc.detail).message)
        return False
    if result.status == 200 and isinstance(_json(result), list):
        r.ok(
            title, "the token may upload entries (checked with POST /api/v1/entries/preview.json, which stores nothing)"
        )
        return True
    if result.status == 401:
        from linkup_sync.nightscout.v3 import is_access_token

        granted: list[str] | None = None
        if is_access_token(token):  # ask Nightscout whether it knows the token at all, and what it may do
            try:
                _status, granted = _exchange(base, token, pool)
            except TransportError:
                granted = None
        missing = _missing(granted, V1_PERMISSIONS) if granted is not None else []
        if granted is not None and missing:
            r.fail(
                title,
                "Nightscout knows the token, but its role may not upload readings: it needs "
                + " and ".join(V1_PERMISSIONS)
                + ". Add the missing permissions to the role in Admin Tools (the token stays the same).",
                ["Missing: " + ", ".join(missing)],
            )
            return False
        r.fail(
            title,
            NightscoutUnauthorized().message,
            [
                "From the command line the token is the environment variable NIGHTSCOUT_API_TOKEN. A role with only "
                "api:entries:create is not enough: Nightscout also checks api:entries:read."
            ],
        )
    else:
        r.fail(
            title,
            f"the upload check (POST /api/v1/entries/preview.json) answered HTTP {result.status}; "
            "the token could not be confirmed. Check NIGHTSCOUT_URL.",
        )
    return False


def _exchange(base: str, token: str, pool: urllib3.PoolManager) -> tuple[int, list[str] | None]:
    """The JWT exchange (stores nothing): HTTP status and the token's permissions. The JWT is dropped."""
    result = _send(pool, "GET", base + "/api/v2/authorization/request/" + quote(token.strip(), safe=""))
    parsed = _json(result)
    if result.status != 200 or not isinstance(parsed, dict) or not isinstance(parsed.get("permissionGroups"), list):
        return result.status, None
    return 200, [str(p) for group in parsed["permissionGroups"] if isinstance(group, list) for p in group]


def _missing(granted: list[str], wanted: Iterable[str]) -> list[str]:
    return [w for w in wanted if not any(_permits(g, w) for g in granted)]


def _check_token_v3(r: Reporter, title: str, base: str, token: str, pool: urllib3.PoolManager) -> list[str] | None:
    """The token's permissions when it may upload with API v3, else None."""
    from linkup_sync.http import TransportError
    from linkup_sync.nightscout.v3 import ENTRIES_ROLE, UNKNOWN_SUBJECT_TEXT, is_access_token, needs_subject_text

    r.start(title)
    if not is_access_token(token):
        r.fail(title, needs_subject_text(token) + ".")
        return None
    try:
        status, granted = _exchange(base, token, pool)
    except TransportError as exc:
        r.fail(title, NightscoutUnreachable(exc.detail).message)
        return None
    if status == 401:
        r.fail(title, UNKNOWN_SUBJECT_TEXT)
        return None
    if granted is None:
        r.fail(
            title,
            f"the token exchange (GET /api/v2/authorization/request/…) answered HTTP {status}; "
            "the token could not be confirmed. Check NIGHTSCOUT_URL.",
        )
        return None
    missing = _missing(granted, V3_PERMISSIONS)
    if missing:
        r.fail(title, f"Nightscout knows the token, but {ENTRIES_ROLE}.", ["Missing: " + ", ".join(missing)])
        return None
    r.ok(
        title,
        "the token may upload with API v3 (its role has api:entries:create, read and update; checked "
        "with the JWT exchange, which stores nothing)",
    )
    return granted


def _check_treatments(
    r: Reporter, title: str, base: str, token: str, pool: urllib3.PoolManager, api_v3: bool, granted: list[str] | None
) -> None:
    """NIGHTSCOUT_SENSOR_START: may the token post the Sensor Start treatment? Only an access token can be asked."""
    from linkup_sync.http import TransportError
    from linkup_sync.nightscout.v3 import is_access_token

    if not is_access_token(token):
        return  # the API_SECRET may do everything; a SHA-1 cannot be looked up
    wanted = TREATMENTS_V3 if api_v3 else TREATMENTS_V1
    r.start(title)
    if granted is None:
        try:
            _status, granted = _exchange(base, token, pool)
        except TransportError:
            granted = None
        if granted is None:
            r.skip(title, "Nightscout did not list the token's permissions")
            return
    missing = _missing(granted, wanted)
    if missing:
        r.fail(
            title,
            "the token may upload readings, but not the Sensor Start treatment that shows the sensor's "
            f"age in Nightscout: its role also needs {' and '.join(wanted)}. Add them to the role in Admin "
            "Tools, or set NIGHTSCOUT_SENSOR_START=false.",
            ["Missing: " + ", ".join(missing)],
        )
    else:
        r.ok(title, "the token may also post the Sensor Start treatment (" + ", ".join(wanted) + ")")


def _check_nightscout(
    r: Reporter,
    target: Target,
    api_v3: bool,
    sensor_start: bool,
    clock: Callable[[], float],
    suffix: str,
    allow_http: bool = False,
) -> None:
    from linkup_sync.http import make_pool
    from linkup_sync.nightscout.url import HTTP_WARNING, normalize_nightscout_url, plain_http_to_private

    titles = (
        f"Nightscout URL{suffix}",
        f"Nightscout server{suffix}",
        f"Nightscout token{suffix}",
        f"Sensor Start treatment{suffix}",
    )
    r.start(titles[0])
    try:
        base = normalize_nightscout_url(target.nightscout_url, allow_http=allow_http)
    except ValueError as exc:
        r.fail(titles[0], str(exc))
        r.skip(titles[1], "needs a usable NIGHTSCOUT_URL")
        r.skip(titles[2], "needs a usable NIGHTSCOUT_URL")
        return
    r.ok(titles[0], base, ["Warning: " + HTTP_WARNING.format(url=base)] if plain_http_to_private(base) else [])
    pool = make_pool()
    if not _probe_server(r, titles[1], base, pool):
        r.skip(titles[2], "needs a reachable Nightscout")
        return
    granted: list[str] | None = None
    if api_v3:
        granted = _check_token_v3(r, titles[2], base, target.nightscout_token, pool)
        ok = granted is not None
    else:
        ok = _check_token_v1(r, titles[2], base, target.nightscout_token, pool, clock)
    if ok and sensor_start:
        _check_treatments(r, titles[3], base, target.nightscout_token, pool, api_v3, granted)


# --- the command ------------------------------------------------------------------------------------


def run_doctor(
    args: argparse.Namespace, env: Mapping[str, str], clock: Callable[[], float], out: TextIO, err: TextIO
) -> int:
    r = Reporter(out)
    settings = _check_settings(r, env)
    creds = _check_credentials(r, args, env)
    if settings is not None and creds is not None:
        store = state_store(args, clock)
        try:
            _check_linkup(r, args, settings, creds, store, clock, err)
        except ConfigError as exc:  # e.g. a damaged state file
            r.fail("LibreLink Up", exc.message.splitlines()[0].rstrip(":"), exc.problems)
        except Exception as exc:
            text = describe_aws_failure(exc)
            if text is None:
                raise
            r.fail("LibreLink Up", text, [AWS_HINT])
    else:
        r.skip("LibreLink Up", "needs valid settings and credentials")
    if creds is not None:
        default_v3 = settings.api_v3 if settings is not None else False
        sensor_start = bool(getattr(settings, "sensor_start", False))
        allow_http = bool(getattr(settings, "allow_http", False))
        for i, target in enumerate(creds.targets, start=1):
            suffix = f" ({i} of {len(creds.targets)})" if len(creds.targets) > 1 else ""
            api_v3 = default_v3 if target.api_v3 is None else target.api_v3
            _check_nightscout(r, target, api_v3, sensor_start, clock, suffix, allow_http)
    else:
        r.skip("Nightscout", "needs the credentials")
    out.write("\n")
    if r.failed:
        out.write(
            f"{r.failed} of {r.passed + r.failed} checks failed. Fix the {r.marks[False].strip()} lines "
            f"above, then run `{PROG} doctor` again.\n"
        )
        return 1
    out.write(f"All {r.passed} checks passed.\n")
    return 0
