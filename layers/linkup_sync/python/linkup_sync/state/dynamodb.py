"""State in the stack's DynamoDB table: one Query to read an account, one UpdateItem per change.

The function's IAM role allows exactly dynamodb:Query and dynamodb:UpdateItem on this table.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..aws import ClientSlot
from ..errors import StateConflict, StateUnavailable
from ..model import Ticket
from ..ports import Sealer
from ..trends import Point, pack_recent, unpack_recent
from .model import AccountState, IncidentKey, StoredState, TargetState, pack_ledger, unpack_ledger

log = logging.getLogger("linkup_sync")

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

ACCOUNT_SK = "account"
TARGET_PREFIX = "target#"
# The marker of the incidents open for this account: one attribute "open#<kind>#<scope>" per incident.
# It has no expiry: deleting it while an incident is open would hide that incident from warm containers,
# and an empty one is a few dozen bytes.
INCIDENTS_SK = "incidents"
OPEN_PREFIX = "open#"
TARGET_TTL_S = 30 * 24 * 3600  # a target nobody syncs any more disappears after a month
ACCOUNT_TTL_GRACE_S = 7 * 24 * 3600  # the account item outlives its ticket and its timed breakers by a week
CONFLICT_RETRIES = 3


@contextlib.contextmanager
def _aws_errors() -> Iterator[None]:
    """botocore's errors (after its own retries) as the package's typed StateUnavailable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        raise StateUnavailable(
            f"AWS answered {code}" if re.fullmatch(r"[A-Za-z.]{1,80}", code) else "AWS answered with an error"
        ) from None
    except BotoCoreError as exc:
        raise StateUnavailable(type(exc).__name__) from None


def query_all(client: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item of a Query, following its pages (a partition past 1 MB comes in several)."""
    params = dict(params)
    items: list[dict[str, Any]] = []
    while True:
        with _aws_errors():
            page = client.query(**params)
        items.extend(page.get("Items", []))
        last = page.get("LastEvaluatedKey")
        if not last:
            return items
        params["ExclusiveStartKey"] = last


def _s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value and "S" in value else None


def _n(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    return int(value["N"]) if value and "N" in value else None


# Plain account attributes, stored under their own names (None = attribute absent).
_ACCOUNT_STRINGS = (
    "region",
    "patient_id",
    "bad_credentials_version",
    "bad_credentials_tag",
    "creds_tag",
    "login_block_reason",
    "backoff_reason",
    "version",
    "rejected_version",
)
_ACCOUNT_NUMBERS = ("login_not_before", "backoff_until", "backoff_failures", "version_retry_at")
# What a sealed store keeps only inside the KMS ciphertext: the ticket (a 180-day key to the person's
# readings) and the credentials' fingerprints. Nightscout's JWT likewise, on the target items.
SEALED_ACCOUNT = ("ticket_token", "ticket_user_id", "ticket_account_id", "creds_tag", "bad_credentials_tag")
SEALED_TARGET = ("jwt",)
SEALED_ATTRIBUTE = "sealed"


class SealedStateLost(Exception):
    """A sealed attribute that can never be opened again (another key, another stack's table): not a
    passing fault. What it held (a ticket, a JWT, fingerprints) can be had again, so it is treated as absent."""


def _account_from_item(item: dict[str, Any]) -> AccountState:
    ticket = None
    token, expires = _s(item, "ticket_token"), _n(item, "ticket_expires")
    user_id, account_id, region = _s(item, "ticket_user_id"), _s(item, "ticket_account_id"), _s(item, "region")
    if token and expires is not None and user_id and account_id and region:
        ticket = Ticket(token=token, expires=expires, user_id=user_id, account_id=account_id, region=region)
    fields: dict[str, Any] = {name: _s(item, name) for name in _ACCOUNT_STRINGS}
    fields.update({name: _n(item, name) for name in _ACCOUNT_NUMBERS})
    fields["backoff_failures"] = fields["backoff_failures"] or 0
    return AccountState(ticket=ticket, rev=_n(item, "rev") or 0, **fields)


def _recent(item: dict[str, Any]) -> tuple[Point, ...]:
    try:
        return unpack_recent(bytes(item.get("recent", {}).get("B", b"")))
    except ValueError:  # damaged: only the next current reading's arrow is affected (no double arrow)
        return ()


def _target_from_item(item: dict[str, Any]) -> TargetState:
    sk = _s(item, "sk") or ""
    blob = item.get("uploaded", {}).get("B", b"")
    return TargetState(
        target_id=sk[len(TARGET_PREFIX) :],
        uploaded=unpack_ledger(bytes(blob)),
        sensor=_s(item, "sensor"),
        jwt=_s(item, "jwt"),
        jwt_exp=_n(item, "jwt_exp"),
        checked_until=_n(item, "checked_until"),
        recent=_recent(item),
        rev=_n(item, "rev") or 0,
    )


def _open_incidents(item: dict[str, Any]) -> frozenset[IncidentKey]:
    keys = (name[len(OPEN_PREFIX) :].split("#", 1) for name in item if name.startswith(OPEN_PREFIX))
    return frozenset((parts[0], parts[1]) for parts in keys if len(parts) == 2)


def _breaker_ends(account: AccountState) -> tuple[int | None, ...]:
    return (account.login_not_before, account.backoff_until, account.version_retry_at)


class TableAccess:
    """The stack's table, its client made on first use, and the clock that stamps the items."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
        sealer: Sealer | None = None,
        *,
        secret_id: str | None = None,
    ) -> None:
        self.table_name = table_name
        # made on first use: keeps boto3's import time out of runs that fail before touching state
        self.client_slot: ClientSlot[DynamoDBClient] = ClientSlot("dynamodb", client, secret_id=secret_id)
        self._clock = clock
        self.sealer = sealer  # None: the personal stack, whose table is one person's own

    @property
    def client(self) -> DynamoDBClient:
        return self.client_slot.get()


class DynamoDBStateStore(TableAccess):
    def _query(self, key: str, sk: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk" + (" AND sk = :sk" if sk else ""),
            "ExpressionAttributeValues": {":pk": {"S": key}, **({":sk": {"S": sk}} if sk else {})},
        }
        return query_all(self.client, params)

    def _unsealed(self, key: str, item: dict[str, Any]) -> dict[str, Any]:
        """The item with its sealed attributes opened in place (an item without any is returned as is)."""
        blob = item.get(SEALED_ATTRIBUTE, {}).get("B")
        if blob is None or self.sealer is None:
            return item
        try:
            opened = json.loads(self.sealer.open(key, bytes(blob)))
            fields = {name: {"S": str(value)} for name, value in opened.items()}
        except (SealedStateLost, ValueError, AttributeError):
            # Never a stop for good: the ticket and JWT are fetched again (one login), and a bad-password
            # block without its fingerprint holds for the credentials version it was recorded for.
            log.warning(
                "The sealed part of a stored state item cannot be opened (another key or stack?); it is "
                "treated as empty and written anew: the next LibreLink Up login is made once",
                extra={"reason": "sealed_state_lost"},
            )
            return item
        return {**item, **fields}

    def _seal(self, key: str, values: dict[str, dict[str, Any]], remove: list[str], names: tuple[str, ...]) -> None:
        """Move `names` out of `values` into one ciphertext; their clear copies are always removed."""
        if self.sealer is None:
            return
        secret = {name: values.pop(name)["S"] for name in names if name in values}
        remove[:] = [name for name in remove if name not in names] + list(names)
        if secret:
            plaintext = json.dumps(secret, sort_keys=True, separators=(",", ":")).encode()
            values[SEALED_ATTRIBUTE] = {"B": self.sealer.seal(key, plaintext)}
        else:
            remove.append(SEALED_ATTRIBUTE)

    def load(self, key: str) -> StoredState:
        account = AccountState()
        targets: dict[str, TargetState] = {}
        incidents: frozenset[IncidentKey] = frozenset()
        for item in self._query(key):
            item = self._unsealed(key, item)
            sk = _s(item, "sk") or ""
            if sk == ACCOUNT_SK:
                account = _account_from_item(item)
            elif sk.startswith(TARGET_PREFIX):
                target = _target_from_item(item)
                targets[target.target_id] = target
            elif sk == INCIDENTS_SK:
                incidents = _open_incidents(item)
        return StoredState(key=key, account=account, targets=targets, incidents_open=incidents)

    def mark_incidents(self, key: str, opened: Iterable[IncidentKey], closed: Iterable[IncidentKey]) -> None:
        # Not conditional on a revision: a separate item, so it never conflicts with the account item's
        # optimistic updates, and each incident its own attribute, so concurrent changes all stay.
        opened, closed = sorted(set(opened)), sorted(set(closed) - set(opened))
        names = {"#u": "updated_at"}
        names.update({f"#o{i}": f"{OPEN_PREFIX}{kind}#{scope}" for i, (kind, scope) in enumerate(opened)})
        names.update({f"#c{i}": f"{OPEN_PREFIX}{kind}#{scope}" for i, (kind, scope) in enumerate(closed)})
        now = {"N": str(int(self._clock()))}
        expression = "SET " + ", ".join(["#u = :now", *(f"#o{i} = :now" for i in range(len(opened)))])
        if closed:
            expression += " REMOVE " + ", ".join(f"#c{i}" for i in range(len(closed)))
        with _aws_errors():
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": key}, "sk": {"S": INCIDENTS_SK}},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":now": now},
            )

    def _conditional_update(
        self, key: str, sk: str, expected_rev: int, values: dict[str, dict[str, Any]], remove: Iterable[str] = ()
    ) -> bool:
        names = {f"#a{i}": name for i, name in enumerate(values)}
        sets = [f"{alias} = :v{i}" for i, alias in enumerate(names)]
        attr_values = {f":v{i}": value for i, value in enumerate(values.values())}
        attr_values[":rev"] = {"N": str(expected_rev + 1)}
        sets.append("#rev = :rev")
        names["#rev"] = "rev"
        expression = "SET " + ", ".join(sets)
        removed = list(remove)
        if removed:
            for j, name in enumerate(removed):
                names[f"#r{j}"] = name
            expression += " REMOVE " + ", ".join(f"#r{j}" for j in range(len(removed)))
        if expected_rev == 0:
            condition = "attribute_not_exists(#rev)"  # the login lock may have created the item
        else:
            condition = "#rev = :expected"
            attr_values[":expected"] = {"N": str(expected_rev)}
        with _aws_errors():
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": key}, "sk": {"S": sk}},
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=attr_values,
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                return False
        return True

    def save_account(self, key: str, account: AccountState) -> AccountState:
        now = int(self._clock())
        values: dict[str, dict[str, Any]] = {"updated_at": {"N": str(now)}}
        remove: list[str] = []
        ticket = account.ticket
        if ticket is not None:
            values.update(
                ticket_token={"S": ticket.token},
                ticket_expires={"N": str(ticket.expires)},
                ticket_user_id={"S": ticket.user_id},
                ticket_account_id={"S": ticket.account_id},
            )
        else:
            remove += ["ticket_token", "ticket_expires", "ticket_user_id", "ticket_account_id"]
        if ticket is not None:
            account = replace(account, region=ticket.region)
        for name in _ACCOUNT_STRINGS:
            text = getattr(account, name)
            if text:
                values[name] = {"S": text}
            else:
                remove.append(name)
        for name in _ACCOUNT_NUMBERS:
            number = getattr(account, name)
            if number:
                values[name] = {"N": str(int(number))}
            else:
                remove.append(name)
        remove.append("login_lock_until")
        # The item outlives its ticket and every timed breaker by a week, then DynamoDB removes it. A
        # bad-password block ends only when the credentials change: the item stays until then (deleting
        # it would allow one more login with the rejected password).
        ends = [t for t in (ticket.expires if ticket else None, *_breaker_ends(account)) if t]
        if account.bad_credentials_version:
            remove.append("expires_at")
        elif ends:
            values["expires_at"] = {"N": str(int(max(ends)) + ACCOUNT_TTL_GRACE_S)}
        self._seal(key, values, remove, SEALED_ACCOUNT)
        if self._conditional_update(key, ACCOUNT_SK, account.rev, values, remove):
            return replace(account, rev=account.rev + 1)
        # Another run wrote first (it logged in or chose the patient too): its result is as good as ours.
        return self.load(key).account

    def acquire_login_lock(self, key: str, now: float, seconds: int) -> bool:
        with _aws_errors():
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": key}, "sk": {"S": ACCOUNT_SK}},
                    UpdateExpression="SET login_lock_until = :until",
                    ConditionExpression="attribute_not_exists(login_lock_until) OR login_lock_until < :now",
                    ExpressionAttributeValues={":until": {"N": str(int(now) + seconds)}, ":now": {"N": str(int(now))}},
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                return False
        return True

    def record_upload(self, key: str, target: TargetState, added: Iterable[int]) -> TargetState:
        added = tuple(added)
        sk = TARGET_PREFIX + target.target_id
        current = target
        for _ in range(CONFLICT_RETRIES):
            # our sensor and JWT win; the ledger and the recent readings are unions of ours and the stored
            updated = replace(current, sensor=target.sensor, jwt=target.jwt, jwt_exp=target.jwt_exp)
            updated = updated.with_uploaded(added).checked_at_least(target.checked_until).with_recent(target.recent)
            now = int(self._clock())
            values: dict[str, dict[str, Any]] = {
                "uploaded": {"B": pack_ledger(updated.uploaded)},
                "updated_at": {"N": str(now)},
                "expires_at": {"N": str(now + TARGET_TTL_S)},
            }
            remove = []
            if updated.recent:
                values["recent"] = {"B": pack_recent(updated.recent)}
            else:
                remove.append("recent")
            for name in ("sensor", "jwt"):
                text = getattr(updated, name)
                if text:
                    values[name] = {"S": text}
                else:
                    remove.append(name)
            for name in ("jwt_exp", "checked_until"):
                number = getattr(updated, name)
                if number:
                    values[name] = {"N": str(int(number))}
                else:
                    remove.append(name)
            self._seal(key, values, remove, SEALED_TARGET)
            if self._conditional_update(key, sk, current.rev, values, remove):
                return replace(updated, rev=current.rev + 1)
            items = self._query(key, sk)
            current = (
                _target_from_item(self._unsealed(key, items[0])) if items else TargetState(target_id=target.target_id)
            )
        raise StateConflict()
