"""The hosted state's secrets sealed with KMS (linkup_sync.hosted.sealed_state, issue 21 finding 7), on
moto: nothing secret in clear, each account's own context, and no KMS call for what is unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from linkup_sync.errors import SecretError, StateUnavailable
from linkup_sync.hosted.registry import account_id_for
from linkup_sync.hosted.sealed_state import VaultSealer, account_of
from linkup_sync.hosted.vault import Vault
from linkup_sync.ports import Ticket
from linkup_sync.state.dynamodb import SEALED_ACCOUNT, SEALED_ATTRIBUTE, DynamoDBStateStore
from linkup_sync.state.model import AccountState, TargetState, account_key
from tests.support.moto_hosted import HostedAws, hosted_aws

NOW = 1_800_000_000
ALICE, BOB = "alice@example.invalid", "bob@example.invalid"
TICKET = Ticket(
    token="ticket-token-0123456789", expires=NOW + 180 * 86400, user_id="u-1", account_id="a" * 64, region="eu"
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostedAws]:
    with hosted_aws(monkeypatch) as found:
        found.store.sealer = VaultSealer(found.vault)
        yield found


def items(aws: HostedAws) -> list[dict[str, Any]]:
    return list(aws.dynamodb.scan(TableName=aws.table, ConsistentRead=True)["Items"])


def test_the_state_key_names_its_account() -> None:
    assert account_of(account_key(ALICE)) == account_id_for(ALICE)
    with pytest.raises(StateUnavailable):
        account_of("registry")


def test_ticket_fingerprints_and_jwt_are_stored_only_sealed(aws: HostedAws) -> None:
    key = account_key(ALICE)
    account = AccountState(ticket=TICKET, creds_tag="h1:tag", bad_credentials_tag="h1:bad", bad_credentials_version="v")
    aws.store.save_account(key, account)
    aws.store.record_upload(key, TargetState(target_id="p#site", jwt="jwt-0123456789", jwt_exp=NOW + 3600), [NOW])
    dump = repr(items(aws))
    for secret in (TICKET.token, TICKET.user_id, TICKET.account_id, "h1:tag", "h1:bad", "jwt-0123456789"):
        assert secret not in dump
    assert all(SEALED_ATTRIBUTE in item for item in items(aws))
    loaded = aws.store.load(key)
    assert loaded.account.ticket == TICKET and loaded.account.creds_tag == "h1:tag"
    assert loaded.account.bad_credentials_tag == "h1:bad"
    assert loaded.targets["p#site"].jwt == "jwt-0123456789"
    # a store without the vault (the personal stack's code) sees no ticket rather than a wrong one
    plain = DynamoDBStateStore(aws.table, client=aws.dynamodb, clock=aws.clock)
    assert plain.load(key).account.ticket is None


def test_an_unchanged_secret_is_not_encrypted_again_and_opened_once(aws: HostedAws) -> None:
    key = account_key(ALICE)
    saved = aws.store.save_account(key, AccountState(ticket=TICKET, creds_tag="h1:tag"))
    assert aws.vault.state_encrypts == 1
    aws.store.save_account(key, AccountState(ticket=TICKET, creds_tag="h1:tag", patient_id="p", rev=saved.rev))
    assert aws.vault.state_encrypts == 1  # only the patient changed: the same ciphertext is written back
    for _ in range(3):
        aws.store.load(key)
    assert aws.vault.state_decrypts == 0  # what this container sealed it knows already
    cold_vault = Vault(aws.key_arn, client=aws.kms, clock=aws.clock)  # another container
    cold = DynamoDBStateStore(aws.table, client=aws.dynamodb, clock=aws.clock, sealer=VaultSealer(cold_vault))
    for _ in range(3):
        assert cold.load(key).account.ticket == TICKET
    assert cold_vault.state_decrypts == 1


def test_one_accounts_sealed_state_cannot_be_opened_as_anothers(aws: HostedAws) -> None:
    aws.store.save_account(account_key(ALICE), AccountState(ticket=TICKET, creds_tag="h1:tag"))
    (item,) = [i for i in items(aws) if i["pk"]["S"] == account_key(ALICE)]
    # Bob's item given Alice's ciphertext (someone with write access to the table): KMS refuses it
    aws.dynamodb.put_item(TableName=aws.table, Item={**item, "pk": {"S": account_key(BOB)}})
    other_container = VaultSealer(Vault(aws.key_arn, client=aws.kms, clock=aws.clock))
    cold = DynamoDBStateStore(aws.table, client=aws.dynamodb, clock=aws.clock, sealer=other_container)
    with pytest.raises(SecretError):
        cold.load(account_key(BOB))
    assert set(SEALED_ACCOUNT) & set(item) == set()
