"""The hosted accounts, in the stack's state table next to their state.

Partitions (pk):
- "registry": one item per account (sk = its id): interval, KMS ciphertext of its credentials, the
  few non-secret settings, the masked e-mail, and `last_due`, the minute of the last run claimed.
- "due#<interval>#<offset>": the ids due in that minute of the interval (see schedule.py).
- the account's own state ("acct#..." from state.model.account_key) and "incidents#<id>".

The id is derived from the follower e-mail's digest, so one LibreLink Up account can be added once
(one login, one ticket), and a later sign-up page can find an existing entry without a scan.
The worker only claims (UpdateItem) and reads; adding and removing are the operator's (command line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from ..errors import LinkupSyncError
from ..state.dynamodb import TableAccess, _aws_errors, _n, _s, query_all
from ..state.model import account_key
from .schedule import account_partition

if TYPE_CHECKING:
    pass

REGISTRY_PK = "registry"
INCIDENTS_PREFIX = "incidents#"
# The settings an account may carry besides its credentials (all others are the stack's).
# TREND_ARROWS is how the person's own Nightscout shows arrows: theirs to choose, like the API version.
ACCOUNT_SETTING_KEYS = ("LINK_UP_REGION", "LINK_UP_VERSION", "NIGHTSCOUT_API_V3", "TREND_ARROWS")


class AccountExists(LinkupSyncError):
    reason = "account_exists"
    needs_person = True

    def __init__(self, account_id: str) -> None:
        super().__init__(
            f"This LibreLink Up account is already registered as {account_id}. To change its password, "
            "Nightscout sites or settings, run the same command with --replace (its state is kept)."
        )


def account_id_for(username: str) -> str:
    """12 hex digits of the state key's digest: short enough to type, unique at any realistic scale."""
    return account_key(username).split("#", 1)[1][:12]


def incidents_partition(account_id: str) -> str:
    return INCIDENTS_PREFIX + account_id


def mask_email(username: str) -> str:
    """j***@e***.com: enough for the operator to tell accounts apart, not enough to write to them."""
    local, _, domain = username.strip().lower().partition("@")
    host, dot, tld = domain.rpartition(".")
    return f"{local[:1]}***@{host[:1]}***{dot}{tld}" if host else f"{local[:1]}***@***"


@dataclass(frozen=True)
class Account:
    id: str
    state_key: str
    interval: int
    ciphertext: bytes = field(repr=False)
    key_id: str
    cred_version: str  # new at every add: a bad-password breaker ends when the credentials are replaced
    email_masked: str
    people: int
    settings: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
    last_due: int | None = None  # the epoch minute of the last run claimed

    @property
    def due_partition(self) -> str:
        return account_partition(self.id, self.interval)


def _account(item: dict[str, Any]) -> Account:
    raw = item.get("settings", {}).get("M", {})
    return Account(
        id=_s(item, "sk") or "",
        state_key=_s(item, "state_key") or "",
        interval=_n(item, "interval") or 5,
        ciphertext=bytes(item.get("credentials", {}).get("B", b"")),
        key_id=_s(item, "key_id") or "",
        cred_version=_s(item, "cred_version") or "",
        email_masked=_s(item, "email_masked") or "",
        people=_n(item, "people") or 0,
        settings={k: v["S"] for k, v in raw.items() if "S" in v},
        created_at=_n(item, "created_at") or 0,
        updated_at=_n(item, "updated_at") or 0,
        last_due=_n(item, "last_due"),
    )


def _item(account: Account) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": REGISTRY_PK},
        "sk": {"S": account.id},
        "state_key": {"S": account.state_key},
        "interval": {"N": str(account.interval)},
        "credentials": {"B": account.ciphertext},
        "key_id": {"S": account.key_id},
        "cred_version": {"S": account.cred_version},
        "email_masked": {"S": account.email_masked},
        "people": {"N": str(account.people)},
        "settings": {"M": {k: {"S": v} for k, v in account.settings.items()}},
        "created_at": {"N": str(account.created_at)},
        "updated_at": {"N": str(account.updated_at)},
    }
    if account.last_due is not None:
        item["last_due"] = {"N": str(account.last_due)}
    return item


class Registry(TableAccess):
    # --- the worker and the dispatcher ----------------------------------------------------------

    def due_ids(self, partition: str) -> list[str]:
        """The ids listed in one due partition (eventually consistent: a new account may wait a minute)."""
        return [_s(item, "sk") or "" for item in self._query(partition, projection="sk", consistent=False)]

    def claim(self, account_id: str, due_minute: int) -> Account | None:
        """Mark the run of `due_minute` as taken; the account, or None when it is gone or was run for this
        minute (or a later one) already. One conditional write: of two deliveries of a message, one runs.

        The account is returned as it was before the claim, so its `last_due` is the minute claimed
        before: what `release` puts back."""
        with _aws_errors():
            try:
                reply = self.client.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": REGISTRY_PK}, "sk": {"S": account_id}},
                    UpdateExpression="SET last_due = :due",
                    ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(last_due) OR last_due < :due)",
                    ExpressionAttributeValues={":due": {"N": str(due_minute)}},
                    ReturnValues="ALL_OLD",
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                return None
        return _account(reply.get("Attributes", {}))

    def release(self, account: Account, due_minute: int, previous: int | None) -> None:
        """Undo a claim (the run could not start for a reason of ours), so the message's retry runs."""
        names = {"#due": "last_due"}
        values: dict[str, Any] = {":due": {"N": str(due_minute)}}
        if previous is None:
            expression = "REMOVE #due"
        else:
            expression = "SET #due = :previous"
            values[":previous"] = {"N": str(previous)}
        # a later run may have claimed it meanwhile: then there is nothing to undo
        with _aws_errors(), contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": REGISTRY_PK}, "sk": {"S": account.id}},
                UpdateExpression=expression,
                ConditionExpression="#due = :due",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    # --- the operator's command line ------------------------------------------------------------

    def get(self, account_id: str) -> Account | None:
        with _aws_errors():
            reply = self.client.get_item(
                TableName=self.table_name,
                Key={"pk": {"S": REGISTRY_PK}, "sk": {"S": account_id}},
                ConsistentRead=True,
            )
        item = reply.get("Item")
        return _account(item) if item else None

    def accounts(self) -> Iterator[Account]:
        for item in self._query(REGISTRY_PK, consistent=True):
            yield _account(item)

    def put(self, account: Account, *, replace_existing: bool = False) -> Account:
        """Store a new account (or replace one: its state, ticket and breakers stay) and list it as due."""
        now = int(self._clock())
        old = self.get(account.id)
        if old is not None and not replace_existing:
            raise AccountExists(account.id)
        account = replace(
            account,
            created_at=old.created_at if old else now,
            updated_at=now,
            last_due=old.last_due if old else None,
        )
        writes: list[dict[str, Any]] = [
            {"Put": {"TableName": self.table_name, "Item": _item(account)}},
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": {"pk": {"S": account.due_partition}, "sk": {"S": account.id}},
                }
            },
        ]
        if old is not None and old.due_partition != account.due_partition:
            writes.append({"Delete": {"TableName": self.table_name, "Key": self._key(old.due_partition, old.id)}})
        if old is None:
            writes[0]["Put"]["ConditionExpression"] = "attribute_not_exists(pk)"
        with _aws_errors():
            try:
                self.client.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]
            except self.client.exceptions.TransactionCanceledException:
                raise AccountExists(account.id) from None  # added by someone else a moment ago
        return account

    def remove(self, account: Account) -> int:
        """Delete the account's registry and due items, its state and its incidents; the items deleted."""
        keys = [self._key(REGISTRY_PK, account.id), self._key(account.due_partition, account.id)]
        for partition in (account.state_key, incidents_partition(account.id)):
            keys += [self._key(partition, _s(item, "sk") or "") for item in self._query(partition, projection="sk")]
        for start in range(0, len(keys), 25):
            pending: list[dict[str, Any]] = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
            while pending:
                with _aws_errors():
                    reply = self.client.batch_write_item(RequestItems={self.table_name: pending})  # type: ignore[dict-item]
                pending = cast("list[dict[str, Any]]", reply.get("UnprocessedItems", {}).get(self.table_name, []))
        return len(keys)

    def items(self, partition: str) -> list[dict[str, Any]]:
        """Every item of a partition (the command line reads an account's state and incidents)."""
        return self._query(partition, consistent=True)

    # ---------------------------------------------------------------------------------------------

    @staticmethod
    def _key(pk: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def _query(self, pk: str, *, projection: str | None = None, consistent: bool = True) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "ConsistentRead": consistent,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
        }
        if projection:
            params["ProjectionExpression"] = "pk, sk" if projection == "sk" else projection
        return query_all(self.client, params)
