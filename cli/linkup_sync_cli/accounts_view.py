"""What `linkup-sync accounts list` and `show` print: an account's registry entry, state and incidents.

Read only, and never the ciphertext's content: nothing here asks KMS for anything. Used by
accounts_command.py (it imports this module; this one imports none of the command line but output).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from linkup_sync.errors import ConfigError

from .output import PROG, age_text, utc_text

if TYPE_CHECKING:
    from linkup_sync.hosted.registry import Account, Registry
    from linkup_sync.incidents.model import IncidentRecord

LIST_THREADS = 8  # below boto3's 10 pooled connections per client, which the threads share
TARGET_SK_PREFIX = "target#"

_ID_RE = re.compile(r"^[0-9a-f]{12}$")


def people_text(count: int) -> str:
    return f"{count} {'person' if count == 1 else 'people'}"


def schedule_text(account_id: str, interval: int) -> str:
    """When an account runs, in the words of a clock: the minutes past each hour (the same in any
    whole-hour time zone, hence UTC only as a reminder)."""
    from linkup_sync.hosted.schedule import offset

    if interval == 1:
        return "runs every minute"
    minutes = [f":{m:02d}" for m in range(offset(account_id, interval), 60, interval)]
    if len(minutes) == 1:
        return f"runs once an hour, at {minutes[0]} (UTC)"
    shown = ", ".join(minutes[:4]) + (", …" if len(minutes) > 4 else "")
    return f"runs every {interval} min, at {shown} past each hour (UTC)"


def find_account(registry: Registry, text: str) -> Account:
    """The account named by its id or its follower e-mail; an unknown one is the operator's to fix."""
    from linkup_sync.hosted.registry import account_id_for, mask_email

    text = text.strip()
    by_email = "@" in text
    account_id = account_id_for(text) if by_email else text.lower()
    if _ID_RE.match(account_id):
        account = registry.get(account_id)
        if account is not None:
            return account
        named = f"for {mask_email(text)}" if by_email else account_id
        problem = f"There is no account {named} in the table {registry.table_name}."
    else:
        problem = "An account id has 12 characters, digits and a to f (or give the follower e-mail)."
    listing = f"{PROG} accounts list --table {registry.table_name}"
    raise ConfigError([f"{problem} `{listing}` lists the accounts."], heading="Unknown account")


# --- what the table holds about an account -------------------------------------------------------------


@dataclass
class TargetView:
    target_id: str  # "<patient>#<site digest>"
    uploaded_at: int | None  # when the state last moved forward for it: the last upload
    newest_reading: int | None  # the newest reading Nightscout is known to hold

    @property
    def patient(self) -> str:
        return self.target_id.split("#", 1)[0] or "(the first person followed)"

    @property
    def site(self) -> str:
        return self.target_id.rpartition("#")[2]


@dataclass
class AccountView:
    account: Account
    targets: list[TargetView] = field(default_factory=list)
    incidents: list[IncidentRecord] = field(default_factory=list)  # the open ones, oldest first

    @property
    def last_upload(self) -> int | None:
        return max((t.uploaded_at for t in self.targets if t.uploaded_at is not None), default=None)


def _view(registry: Registry, account: Account) -> AccountView:
    """One account's state and open incidents: two queries of its own partitions."""
    from linkup_sync.hosted.registry import incidents_partition
    from linkup_sync.state.incidents import DynamoDBIncidentStore
    from linkup_sync.state.model import unpack_ledger

    view = AccountView(account=account)
    for item in registry.items(account.state_key):
        sk = item.get("sk", {}).get("S", "")
        if not sk.startswith(TARGET_SK_PREFIX):
            continue
        updated = item.get("updated_at", {}).get("N")
        try:
            ledger = unpack_ledger(bytes(item.get("uploaded", {}).get("B", b"")))
        except ValueError:  # a damaged ledger: the run repairs it; here it only means "unknown"
            ledger = ()
        view.targets.append(
            TargetView(
                target_id=sk[len(TARGET_SK_PREFIX) :],
                uploaded_at=int(updated) if updated else None,
                newest_reading=ledger[-1] if ledger else None,
            )
        )
    store = DynamoDBIncidentStore(registry.table_name, client=registry.client, pk=incidents_partition(account.id))
    view.incidents = sorted((r for r in store.load_incidents().values() if r.is_open), key=lambda r: r.opened_at)
    return view


def _ago(now: float, epoch_s: int | None, *, never: str = "never") -> str:
    return never if epoch_s is None else f"{age_text(now - epoch_s)} ago"


def _incidents_cell(view: AccountView) -> str:
    if not view.incidents:
        return "none"
    more = len(view.incidents) - 1
    return f"{len(view.incidents)}: {view.incidents[0].title}" + (f" (+{more} more)" if more else "")


def _runs_cell(account: Account) -> str:
    from linkup_sync.hosted.schedule import offset

    return f"{account.interval} min at :{offset(account.id, account.interval):02d}"


# --- list -------------------------------------------------------------------------------------------


def print_accounts(registry: Registry, now: float, out: TextIO, *, as_json: bool) -> None:
    """One line per account; the accounts' partitions are read side by side (thousands of accounts)."""
    accounts = list(registry.accounts())
    if not accounts:
        if not as_json:
            out.write(
                f"No accounts in {registry.table_name} yet. Add one with: "
                f"{PROG} accounts add --table {registry.table_name} --key-id KEY < account.json\n"
            )
        return
    _ = registry.client  # made once, before the threads share it
    with ThreadPoolExecutor(max_workers=min(LIST_THREADS, len(accounts))) as threads:
        views = list(threads.map(lambda account: _view(registry, account), accounts))
    if as_json:
        for view in views:
            out.write(json.dumps(_summary(view, now)) + "\n")
        return
    header = ("ID", "E-MAIL", "PEOPLE", "RUNS", "LAST UPLOAD", "OPEN INCIDENTS")
    rows = [
        (
            v.account.id,
            v.account.email_masked,
            str(v.account.people),
            _runs_cell(v.account),
            _ago(now, v.last_upload),
            _incidents_cell(v),
        )
        for v in views
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        out.write("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip() + "\n")
    troubled = sum(1 for v in views if v.incidents)
    never = sum(1 for v in views if v.last_upload is None)
    out.write(
        f"{len(views)} account{'s' if len(views) != 1 else ''}; {troubled} with open incidents "
        f"(`{PROG} accounts show ID --table {registry.table_name}` says what to do); {never} without an upload yet\n"
    )


def _summary(view: AccountView, now: float) -> dict[str, Any]:
    from linkup_sync.hosted.schedule import offset

    a = view.account
    last = view.last_upload
    return {
        "id": a.id,
        "email_masked": a.email_masked,
        "people": a.people,
        "interval_minutes": a.interval,
        "minute_offset": offset(a.id, a.interval),
        "last_upload_at": last,
        "last_upload_age_s": None if last is None else round(now - last),
        "open_incidents": [r.title for r in view.incidents],
    }


# --- show -------------------------------------------------------------------------------------------


def print_account(registry: Registry, account: Account, now: float, out: TextIO, *, as_json: bool) -> None:
    """One account in detail, with what to do about each open incident."""
    from linkup_sync.hosted.schedule import offset

    view = _view(registry, account)
    a = view.account
    if as_json:
        details = _summary(view, now)
        details.update(
            settings=a.settings,
            created_at=a.created_at,
            updated_at=a.updated_at,
            last_run_claimed_at=None if a.last_due is None else a.last_due * 60,
            key_arn=a.key_id,
            targets=[
                {
                    "patient": t.target_id.split("#", 1)[0],
                    "site": t.site,
                    "last_upload_at": t.uploaded_at,
                    "newest_reading_at": t.newest_reading,
                }
                for t in view.targets
            ],
            incidents=[
                {
                    "kind": r.kind,
                    "title": r.title,
                    "person": r.person,
                    "opened_at": r.opened_at,
                    "what": r.what,
                    "todo": r.todo,
                }
                for r in view.incidents
            ],
        )
        out.write(json.dumps(details) + "\n")
        return
    minute = offset(a.id, a.interval)
    claimed = "never yet" if a.last_due is None else f"{utc_text(a.last_due * 60)} ({_ago(now, a.last_due * 60)})"
    settings = ", ".join(f"{k}={v}" for k, v in sorted(a.settings.items())) or "none of its own (the stack's)"
    lines = [
        f"account {a.id}",
        f"  follower e-mail   {a.email_masked}",
        f"  people served     {a.people}",
        f"  schedule          {schedule_text(a.id, a.interval)}; minute offset {minute} of {a.interval}",
        f"  last run claimed  {claimed}",
        f"  settings          {settings}",
        f"  credentials       encrypted with {a.key_id or 'the stack key'}; never shown",
        f"  added             {utc_text(a.created_at)}",
        f"  changed           {utc_text(a.updated_at)}",
        "uploads to Nightscout:",
    ]
    if not view.targets:
        lines.append("  none yet")
    for t in view.targets:
        newest = "" if t.newest_reading is None else f"; newest reading it holds: {_ago(now, t.newest_reading)}"
        lines.append(f"  patient {t.patient}, site {t.site}: last upload {_ago(now, t.uploaded_at)}{newest}")
    lines.append(f"open incidents: {len(view.incidents) or 'none'}")
    for r in view.incidents:
        person = f", {r.person}" if r.person else ""
        lines += [
            f"  {r.title} (since {utc_text(r.opened_at)}, {_ago(now, r.opened_at)}{person})",
            f"    what happened: {r.what}",
            f"    what to do:    {r.todo}",
        ]
    out.write("\n".join(lines) + "\n")
