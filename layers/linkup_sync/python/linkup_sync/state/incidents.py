"""The incident store in the stack's DynamoDB table (the same table, its own partition "incidents").

One item per (kind, scope). Every change is one conditional UpdateItem, so of two overlapping runs (or a
warm and a cold container) exactly one opens, claims a message slot, reminds or closes: the one whose
condition held. The function may only Query and UpdateItem on the table; that is all this uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..incidents.model import EMAIL_OPEN, Incident, IncidentRecord
from .dynamodb import DynamoDBStateStore, _aws_errors, _n, _s

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

INCIDENTS_PK = "incidents"
INCIDENT_PREFIX = "incident#"
PEOPLE_SK = "people"
# A closed incident nobody re-opens disappears three months after it closed. An open one never
# expires: deleting it would open it again as new (a first e-mail instead of a reminder).
INCIDENT_TTL_S = 90 * 24 * 3600


def _record(item: dict[str, Any]) -> IncidentRecord | None:
    kind, gen, opened = _s(item, "kind"), _n(item, "gen"), _n(item, "opened_at")
    if kind is None or gen is None or opened is None:
        return None
    # The slots of this opening: a map reset at every opening, so a late claim on an old one cannot leak.
    raw = item.get("slots", {}).get("M", {})
    slots = {name: int(value["N"]) for name, value in raw.items() if "N" in value}
    return IncidentRecord(
        kind=kind,
        scope=_s(item, "scope") or "",
        gen=gen,
        opened_at=opened,
        title=_s(item, "title") or kind,
        what=_s(item, "what") or "",
        todo=_s(item, "todo") or "",
        person=_s(item, "person") or "",
        email=item.get("email", {}).get("BOOL", True),
        announce=item.get("announce", {}).get("BOOL", True),
        closed_at=_n(item, "closed_at"),
        slots=slots,
        email_last=_n(item, "email_last"),
        reminders=_n(item, "reminders") or 0,
    )


class DynamoDBIncidentStore:
    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
        *,
        sharing: DynamoDBStateStore | None = None,
        pk: str = INCIDENTS_PK,
    ) -> None:
        self.table_name = table_name
        self.pk = pk  # the hosted stack keeps each account's incidents in its own partition
        self._client = client
        self._clock = clock
        self._sharing = sharing  # use the state store's client: one connection pool, made lazily
        self.people: dict[str, str] = {}  # scope (patient short hash) -> initials, as last loaded

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            if self._sharing is not None:
                return self._sharing.client
            from ..aws import client

            self._client = client("dynamodb")
        return self._client

    def load_incidents(self) -> dict[tuple[str, str], IncidentRecord]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": self.pk}},
        }
        found: dict[tuple[str, str], IncidentRecord] = {}
        while True:
            with _aws_errors():
                page = self.client.query(**params)
            for item in page.get("Items", []):
                if _s(item, "sk") == PEOPLE_SK:
                    raw = item.get("people", {}).get("M", {})
                    self.people = {k: v["S"] for k, v in raw.items() if "S" in v}
                    continue
                record = _record(item)
                if record is not None:
                    found[record.key] = record
            if not page.get("LastEvaluatedKey"):
                return found
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _update(self, kind: str, scope: str, **kwargs: Any) -> dict[str, Any] | None:
        """One conditional UpdateItem; None when the condition failed (another run was first)."""
        with _aws_errors():
            try:
                reply = self.client.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": self.pk}, "sk": {"S": f"{INCIDENT_PREFIX}{kind}#{scope}"}},
                    ReturnValues="ALL_NEW",
                    **kwargs,
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                return None
        attributes: dict[str, Any] = reply.get("Attributes", {})
        return attributes

    def remember_people(self, people: dict[str, str]) -> None:
        """Initials only (never names), keyed by the patients' short hashes; last writer wins."""
        with _aws_errors():
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": self.pk}, "sk": {"S": PEOPLE_SK}},
                UpdateExpression="SET people = :people",
                ExpressionAttributeValues={":people": {"M": {k: {"S": v} for k, v in people.items()}}},
            )
        self.people = dict(people)

    def open_incident(self, incident: Incident, now: int) -> IncidentRecord | None:
        removed = "closed_at, email_last, reminders, expires_at"
        item = self._update(
            incident.kind,
            incident.scope,
            UpdateExpression=(
                "SET gen = if_not_exists(gen, :zero) + :one, opened_at = :now, #kind = :kind, #scope = :scope, "
                "#title = :title, #what = :what, #todo = :todo, #person = :person, #email = :email, "
                f"#announce = :announce, slots = :empty REMOVE {removed}"
            ),
            ConditionExpression="attribute_not_exists(opened_at) OR attribute_exists(closed_at)",
            ExpressionAttributeNames={
                f"#{name}": name for name in ("kind", "scope", "title", "what", "todo", "person", "email", "announce")
            },
            ExpressionAttributeValues={
                ":zero": {"N": "0"},
                ":empty": {"M": {}},
                ":one": {"N": "1"},
                ":now": {"N": str(now)},
                ":kind": {"S": incident.kind},
                ":scope": {"S": incident.scope},
                ":title": {"S": incident.title},
                ":what": {"S": incident.what},
                ":todo": {"S": incident.todo},
                ":person": {"S": incident.person},
                ":email": {"BOOL": incident.email},
                ":announce": {"BOOL": incident.announce},
            },
        )
        return _record(item) if item is not None else None

    def claim(self, record: IncidentRecord, slot: str, now: int) -> bool:
        also = ", email_last = :now" if slot == EMAIL_OPEN else ""
        item = self._update(
            record.kind,
            record.scope,
            UpdateExpression=f"SET slots.#slot = :now{also}",
            ConditionExpression="gen = :gen AND attribute_not_exists(slots.#slot)",
            ExpressionAttributeNames={"#slot": slot},
            ExpressionAttributeValues={":now": {"N": str(now)}, ":gen": {"N": str(record.gen)}},
        )
        return item is not None

    def release(self, record: IncidentRecord, slot: str) -> None:
        self._update(
            record.kind,
            record.scope,
            UpdateExpression="REMOVE slots.#slot",
            ConditionExpression="gen = :gen",
            ExpressionAttributeNames={"#slot": slot},
            ExpressionAttributeValues={":gen": {"N": str(record.gen)}},
        )

    def remind(self, record: IncidentRecord, now: int, cutoff: int) -> bool:
        item = self._update(
            record.kind,
            record.scope,
            # REMOVE: an incident opened by an earlier version carries an expiry; it must not lapse while open
            UpdateExpression="SET email_last = :now ADD reminders :one REMOVE expires_at",
            ConditionExpression="gen = :gen AND attribute_not_exists(closed_at) AND email_last <= :cutoff",
            ExpressionAttributeValues={
                ":now": {"N": str(now)},
                ":one": {"N": "1"},
                ":gen": {"N": str(record.gen)},
                ":cutoff": {"N": str(cutoff)},
            },
        )
        return item is not None

    def close(self, record: IncidentRecord, now: int) -> bool:
        item = self._update(
            record.kind,
            record.scope,
            UpdateExpression="SET closed_at = :now, expires_at = :expires",
            ConditionExpression="gen = :gen AND attribute_not_exists(closed_at)",
            ExpressionAttributeValues={
                ":now": {"N": str(now)},
                ":gen": {"N": str(record.gen)},
                ":expires": {"N": str(now + INCIDENT_TTL_S)},
            },
        )
        return item is not None
