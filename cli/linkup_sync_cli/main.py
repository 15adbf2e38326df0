"""The command line for the person setting linkup-sync up: `linkup-sync doctor | sync --once`, and for
whoever runs the hosted stack for many people: `linkup-sync accounts add | list | show | remove`.

The argument parsing only; the commands live in sync_command.py, doctor.py and accounts_command.py.
This package is not shipped in the Lambda layer and knows nothing of the repository: the demo is
`make demo` in a clone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from linkup_sync import __version__
from linkup_sync.addresses import Resolve

from .accounts_command import add_accounts_parser, cmd_accounts
from .doctor import run_doctor
from .import_command import add_import_parser, cmd_import
from .output import PROG, printable_stream
from .setup_command import add_setup_parser, run_setup
from .setup_update import add_update_parser, run_update
from .sync_command import cmd_sync

DEMO_TEXT = (
    f"{PROG}: the demo is part of the repository, not of the installed command: run `make demo` in a clone "
    "of the linkup-sync repository (several simulated hours against local simulators; no AWS, no credentials).\n"
)


# --- argument parsing -------------------------------------------------------------------------------

_MAIN_HELP = """\
Copies FreeStyle Libre readings from LibreLink Up into Nightscout. In AWS the Lambda function does this
on a schedule; these commands check a set-up before and after deploying, and run the same sync from
this machine (for example from cron on a home server, without AWS).

Credentials come from the environment variables LINK_UP_USERNAME, LINK_UP_PASSWORD, NIGHTSCOUT_URL and
NIGHTSCOUT_API_TOKEN (or the stack's secret with --secret-id); settings from LINK_UP_REGION,
LINK_UP_CONNECTION, LINK_UP_VERSION, NIGHTSCOUT_API_V3 and the others listed in the README.

`setup` deploys it in AWS step by step (make setup), `update` brings it to the newest release.
`accounts` manages the accounts of a hosted stack (hosted.yaml), which runs many people's bridges."""

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
        "circuit breakers.\nStores nothing in Nightscout. Exits with 1 when any check fails, with 2 when "
        "the state table\n(--table) is not in the region asked.",
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

    add_setup_parser(commands)
    add_update_parser(commands)
    add_accounts_parser(commands)
    add_import_parser(commands)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] | None = None,
    stdin: TextIO | None = None,
    resolve: Resolve | None = None,
) -> int:
    """Entry point of the `linkup-sync` console script and `python -m linkup_sync_cli`.

    Everything printed, argparse's own messages included, goes through one PrintableText per stream: a
    value from outside cannot send the terminal control codes. `resolve` looks host names up for
    `accounts add` (default: the system's resolver).
    """
    out, err = printable_stream(sys.stdout), printable_stream(sys.stderr)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        return _main(argv, env, clock, stdin, resolve, out, err)


def _main(
    argv: Sequence[str] | None,
    env: Mapping[str, str] | None,
    clock: Callable[[], float] | None,
    stdin: TextIO | None,
    resolve: Resolve | None,
    out: TextIO,
    err: TextIO,
) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["demo"]:  # the former subcommand: the demo needs the repository's simulators
        err.write(DEMO_TEXT)
        return 2
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
        if args.command == "import-csv":
            return cmd_import(args, environment, clock, out, err)
        if args.command == "setup":
            return run_setup(args, environment, clock, out, err)
        if args.command == "update":
            return run_update(args, environment, clock, out, err)
        if args.command == "accounts":
            return cmd_accounts(
                args, clock, sys.stdin if stdin is None else stdin, out, err, env=environment, resolve=resolve
            )
        if args.command == "sync":
            if not args.once:
                err.write(
                    f"{PROG} sync: add --once. It runs one sync and exits; schedule it with cron, e.g.\n"
                    f"  */5 * * * *  . $HOME/.linkup-sync/env && {PROG} sync --once --quiet\n"
                )
                return 2
            return cmd_sync(args, environment, clock, out, err)
        return run_doctor(args, environment, clock, out, err)
    except KeyboardInterrupt:
        err.write("\ninterrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
