"""State in a local JSON file, for `linkup-sync sync --once` on a machine without AWS (cron, a home server).

Same semantics as the DynamoDB store (state/dynamodb.py): a revision counter per item for optimistic
concurrency, a union merge of the upload ledger on conflict, and a login lock that keeps two runs from
logging in at the same moment. Every change happens under an exclusive `fcntl.flock` on a lock file
next to the state file and is written atomically (a temporary file, then `os.replace`), so two cron
runs that overlap can neither corrupt the file nor lose each other's uploads.

The file holds the LibreLink Up ticket (and, for API v3, Nightscout's JWT) but never a password or a
token; it is created readable by its owner only (mode 0600). The AccountState and TargetState
dataclasses are stored field by field, so fields added to them later are stored without a change here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError
from .model import AccountState, IncidentKey, StoredState, TargetState

FORMAT = 1
_T = TypeVar("_T")


# --- dataclass <-> JSON, generically --------------------------------------------------------------


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _convert(hint: Any, value: Any) -> Any:
    """A JSON value back into the type `hint` names: nested dataclasses and tuples; the rest as is."""
    if value is None:
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if (isinstance(value, dict) and _is_dataclass_type(arg)) or (
                isinstance(value, list) and typing.get_origin(arg) is tuple
            ):
                return _convert(arg, value)
        return value
    if _is_dataclass_type(hint) and isinstance(value, dict):
        return _from_json(hint, value)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_convert(item, v) for v in value)
    return value


def _from_json(cls: type[_T], data: dict[str, Any]) -> _T:
    """An instance of the dataclass `cls`; keys it does not know (from a newer version) are ignored."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs = {name: _convert(hints.get(name, Any), value) for name, value in data.items() if name in known}
    return cls(**kwargs)


def _incident_keys(entry: dict[str, Any]) -> frozenset[IncidentKey]:
    raw = entry.get("incidents_open")
    pairs = raw if isinstance(raw, list) else []
    return frozenset((str(p[0]), str(p[1])) for p in pairs if isinstance(p, list) and len(p) == 2)


# --- the store ------------------------------------------------------------------------------------


def default_state_path() -> Path:
    return Path.home() / ".linkup-sync" / "state.json"


class FileStateStore:
    """Implements state.model.StateStore with one JSON file."""

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        self._clock = clock

    def __repr__(self) -> str:
        return f"FileStateStore({str(self.path)!r})"

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    # --- file handling ----------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"format": FORMAT, "accounts": {}}
        except OSError as exc:
            raise ConfigError(
                [f"The state file {self.path} cannot be read ({exc.strerror})."],
                heading="The local state cannot be used",
            ) from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("accounts"), dict):
            raise ConfigError(
                [
                    f"The state file {self.path} is not a linkup-sync state file (damaged JSON?). Delete it: the "
                    "next run logs in once more and sends the last 12 hours again, which Nightscout stores "
                    "without duplicates."
                ],
                heading="The local state cannot be used",
            )
        return data

    def _write(self, data: dict[str, Any]) -> None:
        data["format"] = FORMAT
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp creates it with mode 0600
                json.dump(data, handle, indent=1, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The file's content under an exclusive lock; written back when the block ends normally."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._read()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:  # e.g. a refused lock or a stale save: no write
                self._write(data)
        finally:
            os.close(fd)  # also releases the lock

    @staticmethod
    def _entry(data: dict[str, Any], key: str) -> dict[str, Any]:
        accounts: dict[str, Any] = data.setdefault("accounts", {})
        entry: dict[str, Any] = accounts.setdefault(key, {})
        entry.setdefault("targets", {})
        return entry

    # --- StateStore ---------------------------------------------------------------------------------

    def load(self, key: str) -> StoredState:
        # No lock needed: os.replace swaps the whole file at once, so a reader sees the old or the new one.
        entry = self._read().get("accounts", {}).get(key) or {}
        account = AccountState()
        if isinstance(entry.get("account"), dict):
            account = _from_json(AccountState, entry["account"])
        targets: dict[str, TargetState] = {}
        for tid, raw in (entry.get("targets") or {}).items():
            if isinstance(raw, dict):
                targets[tid] = _from_json(TargetState, raw)
        return StoredState(key=key, account=account, targets=targets, incidents_open=_incident_keys(entry))

    def mark_incidents(self, key: str, opened: Iterable[IncidentKey], closed: Iterable[IncidentKey]) -> None:
        # The command line tells no incidents (it has no desk); kept like the DynamoDB store's marker anyway,
        # so both stores answer the same contract.
        with self._locked() as data:
            entry = self._entry(data, key)
            keys = (_incident_keys(entry) - set(closed)) | set(opened)
            entry["incidents_open"] = sorted([kind, scope] for kind, scope in keys)

    def save_account(self, key: str, account: AccountState) -> AccountState:
        if account.ticket is not None:
            account = replace(account, region=account.ticket.region)
        with self._locked() as data:
            entry = self._entry(data, key)
            stored = entry.get("account")
            stored_rev = stored.get("rev") if isinstance(stored, dict) else None
            # rev 0: only if nobody stored the account yet (the login lock alone does not count)
            if (account.rev == 0 and stored_rev is None) or (account.rev != 0 and stored_rev == account.rev):
                saved = replace(account, rev=account.rev + 1)
                entry["account"] = _to_json(saved)
                entry["updated_at"] = int(self._clock())
                entry.pop("login_lock_until", None)
                return saved
        # Another run wrote first (it logged in or chose the patient too): its result is as good as ours.
        return self.load(key).account

    def acquire_login_lock(self, key: str, now: float, seconds: int) -> bool:
        with self._locked() as data:
            entry = self._entry(data, key)
            held = entry.get("login_lock_until")
            if isinstance(held, int | float) and held >= int(now):
                return False
            entry["login_lock_until"] = int(now) + seconds
            return True

    def record_upload(self, key: str, target: TargetState, added: Iterable[int]) -> TargetState:
        added = tuple(added)
        with self._locked() as data:
            entry = self._entry(data, key)
            raw = entry["targets"].get(target.target_id)
            stored = _from_json(TargetState, raw) if isinstance(raw, dict) else None
            stored_rev = stored.rev if stored is not None else 0
            # Like the DynamoDB store: our other fields win; the ledger is a union with what is stored,
            # so a run that read the state before another one wrote can never move it backwards.
            if stored_rev == target.rev:
                base = target
            else:
                base = stored if stored is not None else TargetState(target_id=target.target_id)
            updated = replace(target, uploaded=base.uploaded, rev=stored_rev + 1).with_uploaded(added)
            updated = updated.checked_at_least(base.checked_until).with_recent(base.recent)
            entry["targets"][target.target_id] = _to_json(updated)
            entry["updated_at"] = int(self._clock())
            return updated
