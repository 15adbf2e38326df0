"""The command line for the person setting linkup-sync up: `linkup-sync doctor | sync --once | demo`.

`sync --once` takes exactly the Lambda function's code path (runtime.run_once); only the adapters
differ: credentials come from environment variables (or the stack's secret, --secret-id) and the state
from a local JSON file (or the stack's table, --table). AWS libraries are imported only for those two
options, so the command also serves people without AWS, e.g. from cron on a home server.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from linkup_sync.errors import ConfigError, LinkupSyncError
from linkup_sync.settings import SECRET_KEYS, Settings

if TYPE_CHECKING:
    from linkup_sync.http import Deadline
    from linkup_sync.ports import Credentials, Target
    from linkup_sync.readings import Reading
    from linkup_sync.runtime import CredentialSource, Dependencies
    from linkup_sync.state.model import AccountState, StateStore, StoredState, TargetState

PROG = "linkup-sync"
# Exit status of `sync --once` (documented in its --help and the README): cron and monitoring check it.
EXIT_OK = 0  # uploaded, nothing new, or a breaker that clears by itself skipped the run
EXIT_FAILED = 1  # the run failed; the next runs try again
EXIT_NEEDS_PERSON = 2  # a person has to act (password, terms, app version, settings...): every run until fixed
REPO_ROOT = Path(__file__).resolve().parents[2]  # cli/linkup_sync_cli/main.py
ENV_VERSION = "LINK_UP_CREDENTIALS_VERSION"


# --- credentials ------------------------------------------------------------------------------------


class EnvCredentials:
    """The four secret keys from environment variables with the same names.

    The bad-password breaker is keyed by a credentials version; environment variables have none, so it
    is $LINK_UP_CREDENTIALS_VERSION (any text you change together with the password) or "env". After
    fixing a rejected password, `--reset-login` clears the breaker instead.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def get(self) -> Credentials:
        from linkup_sync.settings import credentials_from_secret

        missing = [key for key in SECRET_KEYS if not self.env.get(key, "").strip()]
        if missing:
            problems = [f"{key} is not set." for key in missing]
            problems.append(
                "Set the environment variables " + ", ".join(SECRET_KEYS) + " (the same names as in "
                "the secret), or read the stack's secret with --secret-id."
            )
            raise ConfigError(problems, heading="The credentials are incomplete")
        raw = {key: self.env[key] for key in SECRET_KEYS}
        version = self.env.get(ENV_VERSION, "").strip() or "env"
        return credentials_from_secret(raw, version=version, secret_id=None)


class FixedCredentials:
    """Credentials read once (doctor reads them before its checks and hands the same ones to the run)."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds

    def get(self) -> Credentials:
        return self.creds


def credential_source(secret_id: str | None, env: Mapping[str, str]) -> CredentialSource:
    if secret_id:
        from linkup_sync.secrets import SecretsManagerCredentials

        return SecretsManagerCredentials(secret_id)
    return EnvCredentials(env)


def describe_aws_failure(exc: Exception) -> str | None:
    """A safe one-line text for an AWS SDK failure (no credentials, no region, ...), else None."""
    module = type(exc).__module__
    if module.startswith(("botocore", "boto3")):
        return f"AWS could not be used: {exc}"
    return None


# --- state ------------------------------------------------------------------------------------------


def state_store(args: argparse.Namespace, clock: Callable[[], float]) -> StateStore:
    if args.table:
        from linkup_sync.state.dynamodb import DynamoDBStateStore

        return DynamoDBStateStore(args.table, clock=clock)
    from linkup_sync.state.file import FileStateStore, default_state_path

    return FileStateStore(args.state or default_state_path(), clock=clock)


def state_label(store: StateStore) -> str:
    path = getattr(store, "path", None)
    if path is not None:
        return shorten_home(Path(path))
    table = getattr(store, "table_name", None)
    return f"DynamoDB table {table}" if table else "the state store"


def shorten_home(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if home not in ("", "/") and text.startswith(home + os.sep) else text


class NoRecordStore:
    """A store that keeps logins and breakers (they protect the account) but records no upload."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner

    def load(self, key: str) -> StoredState:
        return self.inner.load(key)

    def save_account(self, key: str, account: AccountState) -> AccountState:
        return self.inner.save_account(key, account)

    def acquire_login_lock(self, key: str, now: float, seconds: int) -> bool:
        return self.inner.acquire_login_lock(key, now, seconds)

    def record_upload(self, key: str, target: TargetState, added: Iterable[int]) -> TargetState:
        return target


@dataclass
class CollectingSink:
    """Stands in for Nightscout: keeps what would be uploaded and sends nothing."""

    readings: list[Reading] = field(default_factory=list)
    sensor_starts: list[tuple[str, int]] = field(default_factory=list)
    requests_made: int = 0

    def upload(self, readings: Sequence[Reading]) -> int:
        self.readings.extend(readings)
        return len(readings)

    def post_sensor_start(self, *, serial: str, activated_at: int) -> None:
        self.sensor_starts.append((serial, activated_at))


def collecting_factory(
    sinks: list[CollectingSink], *, check_url: bool
) -> Callable[[Dependencies, Target, TargetState, Deadline], CollectingSink]:
    def factory(deps: Dependencies, target: Target, stored: TargetState, deadline: Deadline) -> CollectingSink:
        if check_url:
            from linkup_sync.nightscout.url import normalize_nightscout_url

            try:
                normalize_nightscout_url(target.nightscout_url, allow_http=deps.settings.allow_http)
            except ValueError as exc:  # the same failure as the real uploader's (runtime.build_sink)
                raise ConfigError([str(exc)], heading="The Nightscout settings cannot be used") from None
        sink = CollectingSink()
        sinks.append(sink)
        return sink

    return factory


def reset_login(store: StateStore, key: str) -> list[str]:
    """Forget the stored blocks on logging in, except a running LibreLink Up lockout. Returns what was cleared."""
    account = store.load(key).account
    changes: dict[str, Any] = {}
    cleared: list[str] = []
    if account.bad_credentials_version is not None:
        changes["bad_credentials_version"] = None
        cleared.append("the block after LibreLink Up rejected the password")
    if account.login_not_before and (account.login_block_reason or "") != "locked":
        changes.update(login_not_before=None, login_block_reason=None)
        cleared.append("the wait for an action in the LibreLink Up app")
    if account.rejected_version:
        changes["rejected_version"] = None
        cleared.append(f"the block on app version {account.rejected_version}")
    if account.backoff_until or account.backoff_failures:
        changes.update(backoff_until=None, backoff_failures=0, backoff_reason=None)
        cleared.append("the back-off after LibreLink Up errors")
    if changes:
        store.save_account(key, replace(account, **changes))
    return cleared


# --- output helpers ---------------------------------------------------------------------------------


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes = int(max(seconds, 0) // 60)
    if minutes < 1:
        return "less than 1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def utc_text(epoch_s: float, *, seconds: bool = False) -> str:
    fmt = "%Y-%m-%d %H:%M:%SZ" if seconds else "%Y-%m-%d %H:%MZ"
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime(fmt)


class _Buffer(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def package_logs(verbose: bool, err: TextIO) -> Iterator[_Buffer]:
    """The package's log lines: live on stderr with --verbose, otherwise kept for the caller to show."""
    logger = logging.getLogger("linkup_sync")
    buffer = _Buffer()
    handler: logging.Handler = buffer
    if verbose:
        handler = logging.StreamHandler(err)
        handler.setFormatter(logging.Formatter("  %(levelname)s %(message)s"))
    # The command line owns the output: a JSON handler left by the Lambda set-up in the same process
    # (observability.logger()) must not print log lines between the command's own lines.
    saved = (logger.level, logger.propagate, list(logger.handlers))
    for other in saved[2]:
        logger.removeHandler(other)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        for other in saved[2]:
            logger.addHandler(other)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


# --- sync -------------------------------------------------------------------------------------------


def _target_line(prefix: str, uploaded: int, gap_filled: int, age: float | None, dry: bool) -> str:
    if uploaded:
        verb = "would upload" if dry else "uploaded"
        text = f"{verb} {uploaded} reading{'s' if uploaded != 1 else ''}"
        if gap_filled:
            text += f" ({gap_filled} from the history)"
    else:
        text = "nothing new to upload"
    if age is not None:
        text += f"; newest reading {age_text(age)} old"
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


def cmd_sync(
    args: argparse.Namespace, env: Mapping[str, str], clock: Callable[[], float], out: TextIO, err: TextIO
) -> int:
    from linkup_sync.runtime import Dependencies, run_once
    from linkup_sync.state.model import account_key

    def fail(message: str, reason: str, needs_person: bool = False) -> int:
        if reason in ("bad_credentials", "action_required") and not args.secret_id:
            message += f" After fixing it, run `{PROG} sync --once --reset-login` once."
        if args.json:
            out.write(json.dumps({"error": reason, "message": message, "needs_person": needs_person}) + "\n")
        else:
            err.write(f"{PROG}: failed: {message}\n")
        return EXIT_NEEDS_PERSON if needs_person else EXIT_FAILED

    try:
        settings = Settings.from_env(env, need_aws=False)
        store = state_store(args, clock)
        credentials = credential_source(args.secret_id, env)
        if args.reset_login:
            key = account_key(credentials.get().username)
            cleared = reset_login(store, key)
            if not args.json and not args.quiet:
                out.write(("cleared " + "; ".join(cleared) if cleared else "no stored login block to clear") + "\n")
    except LinkupSyncError as exc:
        return fail(exc.message, exc.reason, exc.needs_person)
    except Exception as exc:
        text = describe_aws_failure(exc)
        if text is None:
            raise
        return fail(text, "aws")

    if settings.allow_http and not args.quiet:
        warn_plain_http(credentials, err)
    sinks: list[CollectingSink] = []
    deps = Dependencies(
        settings=settings, store=NoRecordStore(store) if args.dry_run else store, credentials=credentials, clock=clock
    )
    if args.dry_run:
        deps.sink_factory = collecting_factory(sinks, check_url=True)
    with package_logs(args.verbose, err) as logs:
        try:
            report = run_once(deps)
        except LinkupSyncError as exc:
            shown = {exc.message}
            for message in logs.messages:
                if message not in shown:
                    err.write(f"{PROG}: {message}\n")
                    shown.add(message)
            return fail(exc.message, exc.reason, exc.needs_person)
        except Exception as exc:
            text = describe_aws_failure(exc)
            if text is None:
                raise
            return fail(text, "aws")
    warnings = [m for m in dict.fromkeys(logs.messages) if not m.startswith("run skipped")]

    if args.json:
        summary = report.as_dict()
        if args.dry_run:
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
    for message in warnings:
        err.write(f"{PROG}: {message}\n")
    if report.skipped:
        text = report.skipped_message or report.skipped
        if report.skipped in ("bad_credentials", "action_required"):
            text += f" After fixing it, run `{PROG} sync --once --reset-login` once" + (
                " (or change the secret)." if args.secret_id else "."
            )
        if not args.quiet or report.needs_person:  # --quiet: only what a person has to act on
            out.write(f"skipped: {text}\n")
        # Non-zero on every run while the breaker holds, not only on the first: cron checks the status.
        return EXIT_NEEDS_PERSON if report.needs_person else EXIT_OK
    if args.dry_run:
        _print_readings(sinks, out)
    targets = list(getattr(report, "targets", []))
    lines = []
    if len(targets) > 1:
        for t in targets:
            lines.append(
                _target_line(f"patient {t.patient}: ", t.uploaded, t.gap_filled, t.newest_reading_age_s, args.dry_run)
            )
    else:
        lines.append(_target_line("", report.uploaded, report.gap_filled, report.newest_reading_age_s, args.dry_run))
    if report.logins:
        lines[-1] += " (logged in to LibreLink Up)"
    if args.dry_run:
        lines.append("dry run: nothing was sent to Nightscout and nothing was recorded as uploaded")
    if not args.quiet or args.dry_run:
        out.write("\n".join(lines) + "\n")
    return 0


def warn_plain_http(credentials: CredentialSource, err: TextIO) -> None:
    """NIGHTSCOUT_ALLOW_HTTP: say, for each http:// Nightscout, that the secret's hash travels unencrypted."""
    from linkup_sync.nightscout.url import HTTP_WARNING, normalize_nightscout_url, plain_http_to_private

    with contextlib.suppress(LinkupSyncError, ValueError):
        for target in credentials.get().targets:
            url = normalize_nightscout_url(target.nightscout_url, allow_http=True)
            if plain_http_to_private(url):
                err.write(f"{PROG}: warning: {HTTP_WARNING.format(url=url)}\n")


# --- demo -------------------------------------------------------------------------------------------


def cmd_demo(demo_args: Sequence[str], out: TextIO, err: TextIO) -> int:
    demo = REPO_ROOT / "tools" / "demo.py"
    if not demo.is_file() or not (REPO_ROOT / "template.yaml").is_file():
        err.write(
            f"{PROG}: the demo is only available in a checkout of the linkup-sync repository (it runs "
            "tools/demo.py with the simulators). Clone the repository and run `make demo` there.\n"
        )
        return 2
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        module = importlib.import_module("tools.demo")
    except ImportError as exc:
        err.write(
            f"{PROG}: the demo needs the development packages ({exc.name} is missing): run `make venv` "
            "in the checkout, then `.venv/bin/linkup-sync demo` (or simply `make demo`).\n"
        )
        return 2
    result = module.main(list(demo_args))
    return int(result or 0)


# --- argument parsing -------------------------------------------------------------------------------

_MAIN_HELP = """\
Copies FreeStyle Libre readings from LibreLink Up into Nightscout. In AWS the Lambda function does this
on a schedule; these commands check a set-up before and after deploying, and run the same sync from
this machine (for example from cron on a home server, without AWS).

Credentials come from the environment variables LINK_UP_USERNAME, LINK_UP_PASSWORD, NIGHTSCOUT_URL and
NIGHTSCOUT_API_TOKEN (or the stack's secret with --secret-id); settings from LINK_UP_REGION,
LINK_UP_CONNECTION, LINK_UP_VERSION, NIGHTSCOUT_API_V3 and the others listed in the README."""

_STATE_HELP = (
    "file that keeps the LibreLink Up login, the circuit breakers and what was uploaded "
    "(default ~/.linkup-sync/state.json, created with mode 0600)"
)


def _common(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--state", metavar="FILE", help=_STATE_HELP)
    where.add_argument(
        "--table",
        metavar="NAME",
        help="use the deployed stack's DynamoDB table (output StateTableName) instead of a file, "
        "so the login and breakers are shared with the function (needs AWS credentials)",
    )
    parser.add_argument(
        "--secret-id",
        metavar="ID",
        help="read the credentials from this Secrets Manager secret (output CredentialsSecretArn) "
        "instead of environment variables (needs AWS credentials)",
    )
    parser.add_argument(
        "--reset-login",
        action="store_true",
        help="forget a stored block on logging in (rejected password, pending app action, refused "
        "app version, back-off) before starting; a LibreLink Up lockout is kept until it ends",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the package's log lines")
    parser.add_argument("--now", type=float, help=argparse.SUPPRESS)  # pins the clock (simulator tests)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=_MAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from linkup_sync import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = commands.add_parser(
        "doctor",
        help="check the settings, the LibreLink Up account and Nightscout, step by step",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Checks each step and prints ✔ or ✘ with the fix: the settings; the credentials; the "
        "LibreLink Up login\n(region, terms, lockout, app version); the people the account "
        "follows (to fill LINK_UP_CONNECTION);\nthe newest reading's age; the Nightscout address, "
        "server version, and whether the token may upload.\n\n"
        "Logs in to LibreLink Up at most once, reuses a stored login, and respects the stored "
        "circuit breakers.\nStores nothing in Nightscout. Exits with 1 when any check fails.",
    )
    _common(doctor)

    sync = commands.add_parser(
        "sync",
        help="one sync run from this machine, the same code path as the Lambda function",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs one sync, exactly as the Lambda function does, and prints one line.\n"
        "Exit status: 0 when it uploaded, found nothing new, or a circuit breaker that clears by\n"
        "itself skipped it; 1 when it failed (the next run tries again); 2 when a person has to act\n"
        "(rejected password, terms, refused app version, person not followed, wrong settings): on\n"
        "every run until it is fixed.\n\nFrom cron, every 5 minutes:\n"
        "  */5 * * * *  . $HOME/.linkup-sync/env && linkup-sync sync --once --quiet",
    )
    sync.add_argument("--once", action="store_true", help="run once and exit (required: schedule it with cron)")
    sync.add_argument(
        "--dry-run",
        action="store_true",
        help="print the readings that would be uploaded; send nothing to Nightscout and record "
        "nothing as uploaded (a new LibreLink Up login is still kept)",
    )
    sync.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    sync.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only failures and what needs a person (for cron, which mails any output)",
    )
    _common(sync)

    demo = commands.add_parser(
        "demo",
        help="the repository's demo against local simulators (only in a checkout)",
        description="Runs tools/demo.py (the same as `make demo`): several simulated hours against a LibreLink "
        "Up simulator, a Nightscout stand-in and moto. Needs no AWS account and no credentials. "
        "Only available in a checkout of the repository; the arguments go to tools/demo.py.",
    )
    demo.add_argument("demo_args", nargs=argparse.REMAINDER, help="arguments for tools/demo.py, e.g. --runs 24")
    return parser


def main(
    argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None, clock: Callable[[], float] | None = None
) -> int:
    """Entry point of the `linkup-sync` console script and `python -m linkup_sync`."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    if arguments[:1] == ["demo"]:  # everything after `demo` belongs to tools/demo.py, options included
        return cmd_demo(arguments[1:], out, err)
    parser = build_parser()
    args = parser.parse_args(arguments)
    environment = os.environ if env is None else env
    if args.command is None:
        parser.print_help(out)
        return 2
    if clock is None:
        now = args.now
        clock = time.time if now is None else (lambda: float(now))
    try:
        if args.command == "sync":
            if not args.once:
                err.write(
                    f"{PROG} sync: add --once. It runs one sync and exits; schedule it with cron, e.g.\n"
                    f"  */5 * * * *  . $HOME/.linkup-sync/env && {PROG} sync --once --quiet\n"
                )
                return 2
            return cmd_sync(args, environment, clock, out, err)
        from .doctor import run_doctor

        return run_doctor(args, environment, clock, out, err)
    except KeyboardInterrupt:
        err.write("\ninterrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
