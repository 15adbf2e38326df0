"""`linkup-sync accounts add | list | show | remove`: the operator's commands for the hosted stack.

The accounts live in the stack's state table (linkup_sync.hosted.registry), their credentials only as
KMS ciphertext. `add` encrypts them and never prints them; `list`, `show` and `remove` never decrypt
anything, so they cannot print a password or token even by mistake. AWS libraries are imported only
inside the commands, like --table and --secret-id of the other commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TextIO

from linkup_sync.addresses import Resolve, SiteAddresses, loopback_allowed, system_resolve
from linkup_sync.errors import ConfigError, LinkupSyncError, StateUnavailable

from .accounts_view import find_account, people_text, print_account, print_accounts, schedule_text
from .adapters import describe_aws_failure
from .output import PROG

if TYPE_CHECKING:
    from linkup_sync.hosted.accounts import NewAccount
    from linkup_sync.hosted.registry import Account, Registry

# Exit status of the accounts commands (in their --help): scripts that add many accounts check it.
EXIT_OK = 0
EXIT_FAILED = 1  # AWS could not be used (credentials, region, access, an outage); try again once fixed
EXIT_FIX_INPUT = 2  # the JSON, an option or the id must be fixed (argparse's own errors exit with 2 too)

MAX_INPUT_CHARS = 64 * 1024  # far above one account (KMS takes 4 KB): a wrong file is refused, not read on

_ACCOUNTS_HELP = """\
The accounts of a hosted stack (hosted.yaml): one deployment that runs many LibreLink Up follower
accounts. Every action needs --table, the stack's output StateTableName, and AWS credentials for
the stack's account and region (AWS_REGION or AWS_DEFAULT_REGION).

  add     reads one account's JSON on standard input and stores it, encrypted (needs --key-id)
  list    one line per account: id, e-mail (masked), people, schedule, last upload, open incidents
  show    one account in detail, with what to do about each open incident
  remove  deletes an account: its registry entry and credentials, its schedule, state and incidents

Exit status: 0 done; 1 AWS could not be used (nothing was changed); 2 the JSON, an option or the
account id must be fixed."""

_ADD_HELP = """\
Reads ONE JSON object on standard input, with the keys of the personal stack's secret, either flat:
  {"LINK_UP_USERNAME": "...", "LINK_UP_PASSWORD": "...", "NIGHTSCOUT_URL": "https://...",
   "NIGHTSCOUT_API_TOKEN": "...", "LINK_UP_CONNECTION": "<patientId, optional>"}
or with a TARGETS list (one entry per person followed, each with LINK_UP_CONNECTION, NIGHTSCOUT_URL,
NIGHTSCOUT_API_TOKEN and an optional NIGHTSCOUT_API_V3). Optional settings of this account:
LINK_UP_REGION, LINK_UP_VERSION, NIGHTSCOUT_API_V3, TREND_ARROWS (derived or libre) and
SYNC_INTERVAL_MINUTES (default 5).

Every problem is listed at once, by key name; no credential is ever printed. On success the
account's id is the only line on standard output (a line for people, with its schedule, goes to
standard error).

  linkup-sync accounts add --table TABLE --key-id KEY < account.json"""


# --- argument parsing -------------------------------------------------------------------------------


def add_accounts_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `accounts` command and its four actions, under the main parser's subcommands."""
    accounts = commands.add_parser(
        "accounts",
        help="the hosted stack's accounts: add, list, show, remove (for whoever runs it for many people)",
        description=_ACCOUNTS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    accounts.set_defaults(accounts_help=accounts.format_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--table", metavar="NAME", required=True, help="the hosted stack's DynamoDB table (output StateTableName)"
    )
    common.add_argument(
        "--key-id",
        metavar="KEY",
        help="the stack's KMS key for the credentials (output CredentialsKeyArn; a key id or alias/NAME "
        "works too). Only add uses it",
    )
    common.add_argument("--now", type=float, help=argparse.SUPPRESS)  # pins the clock (tests), like doctor's
    actions = accounts.add_subparsers(dest="accounts_command", metavar="ACTION")
    add = actions.add_parser(
        "add",
        parents=[common],
        help="add an account from its JSON on standard input",
        description=_ADD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument(
        "--replace",
        action="store_true",
        help="replace an account that exists (new password, sites or settings); its login, breakers and "
        "record of uploads are kept",
    )
    listing = actions.add_parser("list", parents=[common], help="one line per account")
    listing.add_argument("--json", action="store_true", help="one JSON object per account and line")
    show = actions.add_parser("show", parents=[common], help="one account in detail (never its credentials)")
    show.add_argument("account", metavar="ID", help="the account's id (from add or list), or its follower e-mail")
    show.add_argument("--json", action="store_true", help="print the details as one JSON object")
    remove = actions.add_parser(
        "remove", parents=[common], help="delete an account with its credentials, schedule, state and incidents"
    )
    remove.add_argument("account", metavar="ID", help="the account's id (from add or list), or its follower e-mail")


# --- the command ------------------------------------------------------------------------------------


def cmd_accounts(
    args: argparse.Namespace,
    clock: Callable[[], float],
    stdin: TextIO | None,
    out: TextIO,
    err: TextIO,
    *,
    env: Mapping[str, str] | None = None,
    resolve: Resolve | None = None,
) -> int:
    """`env`: LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT (local tests' sites on 127.0.0.1); `resolve`: how `add`
    looks the Nightscout sites' names up (default: the system's resolver)."""
    action = args.accounts_command
    if action is None:
        out.write(args.accounts_help())
        return EXIT_FIX_INPUT
    from linkup_sync.hosted.registry import Registry

    name = f"{PROG} accounts {action}"
    registry = Registry(args.table.strip(), clock=clock)
    try:
        if action == "add":
            sites = SiteAddresses(allow_loopback=loopback_allowed(env or {}), resolve=resolve or system_resolve)
            _add(args, registry, stdin, out, err, sites)
        elif action == "list":
            print_accounts(registry, clock(), out, as_json=args.json)
        elif action == "show":
            print_account(registry, find_account(registry, args.account), clock(), out, as_json=args.json)
        else:
            _remove(registry, find_account(registry, args.account), out)
        return EXIT_OK
    except StateUnavailable as exc:
        err.write(f"{name}: failed: {_aws_text(exc.detail, args.table)}\n")
        return EXIT_FAILED
    except LinkupSyncError as exc:
        err.write(f"{name}: {exc.message}\n")
        return EXIT_FIX_INPUT if exc.needs_person else EXIT_FAILED
    except Exception as exc:
        return fail_aws(exc, name, err)


def fail_aws(exc: Exception, name: str, err: TextIO) -> int:
    """An AWS SDK failure a person can fix (credentials, region, endpoint); anything else is a bug: re-raise."""
    text = describe_aws_failure(exc)
    if text is None:
        raise exc
    err.write(f"{name}: failed: {text}\n")
    return EXIT_FAILED


def _aws_text(detail: str, table: str) -> str:
    if "ResourceNotFound" in detail:
        return (
            f"AWS has no table {table} in this region ({detail}). Check --table (the stack's output "
            "StateTableName) and AWS_REGION (the stack's region)."
        )
    return (
        f"AWS could not be used ({detail}). Check the AWS credentials (`aws sts get-caller-identity`), "
        "AWS_REGION (the stack's region), and that they may use the table and the key. Nothing was changed."
    )


# --- add --------------------------------------------------------------------------------------------


def _add(
    args: argparse.Namespace, registry: Registry, stdin: TextIO | None, out: TextIO, err: TextIO, sites: SiteAddresses
) -> None:
    from linkup_sync.hosted.accounts import HEADING, check_account, seal_account
    from linkup_sync.hosted.registry import AccountExists
    from linkup_sync.hosted.vault import Vault

    key_id = (args.key_id or "").strip()
    problems: list[str] = []
    new: NewAccount | None = None
    if not key_id:
        problems.append(
            "--key-id is missing: give the stack's output CredentialsKeyArn (a key id or alias/NAME works "
            "too). The credentials are stored only encrypted with that key."
        )
    text, unreadable = _read_account_json(stdin, registry.table_name)
    if unreadable:
        problems.append(unreadable)
    else:
        try:
            new = check_account(text, addresses=sites)
        except ConfigError as exc:
            problems += exc.problems
    if problems or new is None:
        raise ConfigError(problems, heading=HEADING)
    existing = registry.get(new.id)
    if existing is not None and not args.replace:
        raise AccountExists(new.id)  # before KMS: a refused add costs no Encrypt
    stored = registry.put(seal_account(new, Vault(key_id)), replace_existing=args.replace)
    out.write(stored.id + "\n")
    what = "added" if existing is None else "replaced (its login, breakers and record of uploads are kept)"
    err.write(
        f"{PROG}: account {stored.id} {what}: {stored.email_masked}, {people_text(stored.people)}; "
        f"{schedule_text(stored.id, stored.interval)}.\n"
    )


def _read_account_json(stdin: TextIO | None, table: str) -> tuple[str, str | None]:
    """(the text, None) or ("", what is wrong): a terminal is not read, it would wait for typing."""
    usage = f"{PROG} accounts add --table {table} --key-id KEY < account.json"
    try:
        interactive = stdin is None or stdin.isatty()
    except ValueError:  # a closed stream
        interactive = True
    if interactive:
        return "", (
            f"The account's JSON is read from standard input: put it in a file and run `{usage}` "
            "(typed or pasted in a terminal, the password would stay in the scrollback)."
        )
    assert stdin is not None
    try:
        text = stdin.read(MAX_INPUT_CHARS + 1)
    except UnicodeDecodeError:
        return "", "Standard input is not UTF-8 text: give the account's JSON file, saved as UTF-8."
    if len(text) > MAX_INPUT_CHARS:
        return "", f"Standard input holds more than {MAX_INPUT_CHARS} characters: give one account's JSON object."
    if not text.strip():
        return "", f"Standard input is empty: give the account's JSON, e.g. `{usage}`."
    return text, None


# --- remove -----------------------------------------------------------------------------------------


def _remove(registry: Registry, account: Account, out: TextIO) -> None:
    from linkup_sync.hosted.registry import incidents_partition

    # Counted first only to say what goes: Registry.remove reads the partitions again and deletes them all.
    state = len(registry.items(account.state_key))
    incidents = len(registry.items(incidents_partition(account.id)))
    deleted = registry.remove(account)
    out.write(
        f"removed account {account.id} ({account.email_masked}): {deleted} items deleted from "
        f"{registry.table_name}: its registry entry with the encrypted credentials, its schedule entry, "
        f"{state} state item{'s' if state != 1 else ''} (LibreLink Up login, breakers, record of uploads) "
        f"and {incidents} incident item{'s' if incidents != 1 else ''}.\n"
    )
