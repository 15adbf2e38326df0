"""TTLs never delete a live breaker or an open incident (issue 21, finding 8).

DynamoDB deletes an item some time after its `expires_at`. The account item carries the
breakers: if it went with the old ticket's expiry, a bad-password block would vanish and one more
login with the rejected password would follow. An incident item deleted while open would be opened
again as new instead of being reminded about. moto, with the table built from template.yaml.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from linkup_sync.incidents.model import Incident
from linkup_sync.model import Ticket
from linkup_sync.state.dynamodb import ACCOUNT_SK, ACCOUNT_TTL_GRACE_S, DynamoDBStateStore
from linkup_sync.state.incidents import INCIDENT_TTL_S, DynamoDBIncidentStore
from linkup_sync.state.model import AccountState, account_key
from tests.unit.test_state_contract import moto_dynamodb_store

NOW = 1_800_000_000  # the clock of moto_dynamodb_store's store
KEY = account_key("fiona.follower@example.invalid")
DAY = 24 * 3600
OLD_TICKET = Ticket(token="t", expires=NOW + 2 * DAY, user_id="u", account_id="a" * 64, region="eu")


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBStateStore]:
    yield from moto_dynamodb_store(monkeypatch)


def expiry(store: DynamoDBStateStore, pk: str, sk: str) -> int | None:
    item = store.client.get_item(TableName=store.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item", {})
    value = item.get("expires_at")
    return int(value["N"]) if value and "N" in value else None


def test_the_account_item_outlives_its_ticket_by_a_week(store: DynamoDBStateStore) -> None:
    store.save_account(KEY, AccountState(ticket=OLD_TICKET))
    assert expiry(store, KEY, ACCOUNT_SK) == OLD_TICKET.expires + ACCOUNT_TTL_GRACE_S


def test_a_bad_password_block_keeps_the_account_item_until_the_credentials_change(store: DynamoDBStateStore) -> None:
    saved = store.save_account(KEY, AccountState(ticket=OLD_TICKET))
    # the login that replaced the old ticket was refused: the ticket is dropped, the block stored
    blocked = store.save_account(
        KEY, AccountState(bad_credentials_version="v1", bad_credentials_tag="x", rev=saved.rev)
    )
    assert expiry(store, KEY, ACCOUNT_SK) is None  # never deleted while it holds
    assert store.load(KEY).account.bad_credentials_version == "v1"
    # new credentials logged in: the item follows the new ticket again
    ticket = Ticket(token="n", expires=NOW + 180 * DAY, user_id="u", account_id="a" * 64, region="eu")
    store.save_account(KEY, AccountState(ticket=ticket, rev=blocked.rev))
    assert expiry(store, KEY, ACCOUNT_SK) == ticket.expires + ACCOUNT_TTL_GRACE_S


@pytest.mark.parametrize(
    "breaker",
    [
        {"login_not_before": NOW + 30 * DAY, "login_block_reason": "locked"},
        {"backoff_until": NOW + 30 * DAY, "backoff_failures": 3, "backoff_reason": "rate_limited"},
        {"version_retry_at": NOW + 30 * DAY, "rejected_version": "4.16.0"},
    ],
    ids=["lockout", "backoff", "version"],
)
def test_a_timed_breaker_keeps_the_account_item_past_its_end(
    store: DynamoDBStateStore, breaker: dict[str, Any]
) -> None:
    store.save_account(KEY, AccountState(**breaker))
    assert expiry(store, KEY, ACCOUNT_SK) == NOW + 30 * DAY + ACCOUNT_TTL_GRACE_S
    # also when an old ticket is still stored: the later of the two decides
    store2 = store.save_account(KEY, AccountState(ticket=OLD_TICKET, rev=1, **breaker))
    assert store2.rev == 2 and expiry(store, KEY, ACCOUNT_SK) == NOW + 30 * DAY + ACCOUNT_TTL_GRACE_S


INCIDENT = Incident(kind="bad_credentials", scope="", title="t", what="w", todo="d")


def incident_expiry(incidents: DynamoDBIncidentStore, store: DynamoDBStateStore) -> int | None:
    return expiry(store, incidents.pk, f"incident#{INCIDENT.kind}#{INCIDENT.scope}")


def test_an_open_incident_never_expires_and_a_closed_one_does(store: DynamoDBStateStore) -> None:
    incidents = DynamoDBIncidentStore(store.table_name, sharing=store, clock=lambda: NOW, pk="incidents#acct")
    record = incidents.open_incident(INCIDENT, NOW)
    assert record is not None and incident_expiry(incidents, store) is None
    # open for half a year: reminded about, still the same opening
    later = NOW + 180 * DAY
    assert incidents.claim(record, "email_open", NOW)
    assert incidents.remind(record, later, later - DAY)
    assert incident_expiry(incidents, store) is None
    assert incidents.close(record, later)
    assert incident_expiry(incidents, store) == later + INCIDENT_TTL_S


def test_an_open_incident_of_an_earlier_version_loses_its_expiry_at_the_next_reminder(
    store: DynamoDBStateStore,
) -> None:
    incidents = DynamoDBIncidentStore(store.table_name, sharing=store, clock=lambda: NOW, pk="incidents#acct")
    record = incidents.open_incident(INCIDENT, NOW)
    assert record is not None and incidents.claim(record, "email_open", NOW)
    store.client.update_item(  # what the earlier version wrote when it opened the incident
        TableName=store.table_name,
        Key={"pk": {"S": incidents.pk}, "sk": {"S": f"incident#{INCIDENT.kind}#"}},
        UpdateExpression="SET expires_at = :e",
        ExpressionAttributeValues={":e": {"N": str(NOW + INCIDENT_TTL_S)}},
    )
    assert incidents.remind(record, NOW + 2 * DAY, NOW + DAY)
    assert incident_expiry(incidents, store) is None
