"""The hosted state's secrets sealed with KMS (linkup_sync.hosted.sealed_state, issue 21 finding 7), on
moto: nothing secret in clear, each account's own context, and no KMS call for what is unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from linkup_sync.errors import StateUnavailable
from linkup_sync.hosted.registry import account_id_for
from linkup_sync.hosted.sealed_state import VaultSealer, account_of
from linkup_sync.hosted.vault import Vault
from linkup_sync.model import Ticket
from linkup_sync.state.dynamodb import SEALED_ACCOUNT, SEALED_ATTRIBUTE, DynamoDBStateStore, SealedStateLost
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
    cold_vault = Vault(aws.key_arn, client=aws.kms)  # another container
    cold = DynamoDBStateStore(aws.table, client=aws.dynamodb, clock=aws.clock, sealer=VaultSealer(cold_vault))
    for _ in range(3):
        assert cold.load(key).account.ticket == TICKET
    assert cold_vault.state_decrypts == 1


def test_one_accounts_sealed_state_cannot_be_opened_as_anothers(aws: HostedAws) -> None:
    aws.store.save_account(account_key(ALICE), AccountState(ticket=TICKET, creds_tag="h1:tag"))
    (item,) = [i for i in items(aws) if i["pk"]["S"] == account_key(ALICE)]
    # Bob's item given Alice's ciphertext (someone with write access to the table): KMS refuses it
    aws.dynamodb.put_item(TableName=aws.table, Item={**item, "pk": {"S": account_key(BOB)}})
    other_container = VaultSealer(Vault(aws.key_arn, client=aws.kms))
    cold = DynamoDBStateStore(aws.table, client=aws.dynamodb, clock=aws.clock, sealer=other_container)
    # Nothing of Alice's opens as Bob's; and since no retry could ever open it, it is treated as absent
    # (Bob's next run logs in once) rather than failing every run for good.
    loaded = cold.load(account_key(BOB)).account
    assert loaded.ticket is None and loaded.creds_tag is None and loaded.bad_credentials_tag is None
    assert set(SEALED_ACCOUNT) & set(item) == set()


class ForeignKms:
    """What AWS KMS answers for a ciphertext of another key or stack (moto answers AccessDenied instead)."""

    def decrypt(self, **params: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "InvalidCiphertextException", "Message": ""}}
        raise ClientError(error, "Decrypt")  # type: ignore[arg-type]


def test_a_ciphertext_no_retry_can_open_is_a_lost_state() -> None:
    vault = Vault("arn:aws:kms:us-east-1:123456789012:key/x", client=ForeignKms())
    with pytest.raises(SealedStateLost):
        vault.open_state("0123456789ab", b"sealed elsewhere")


def test_a_state_sealed_under_another_key_is_written_anew_not_a_stop_for_good(aws: HostedAws) -> None:
    """The stack's key replaced, or a table restored into another stack: the sealed part can never be opened
    again. The run must not fail forever (`accounts add --replace` keeps the state): it is treated as absent
    (one login), and the next save seals under the key in use."""
    key = account_key(ALICE)
    aws.store.save_account(key, AccountState(ticket=TICKET, creds_tag="h1:tag"))

    class LostSealer(VaultSealer):
        def open(self, key: str, ciphertext: bytes) -> bytes:
            raise SealedStateLost()

    cold = DynamoDBStateStore(aws.table, client=aws.dynamodb, clock=aws.clock, sealer=LostSealer(aws.vault))
    lost = cold.load(key)
    assert lost.account.ticket is None and lost.account.creds_tag is None
    cold.save_account(key, replace(lost.account, ticket=TICKET, creds_tag="h1:new"))
    again = aws.store.load(key).account  # the working vault opens what was sealed anew
    assert again.ticket == TICKET and again.creds_tag == "h1:new"


def test_a_passing_kms_fault_is_not_taken_for_a_lost_state(aws: HostedAws, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a ciphertext no retry can open is treated as absent: KMS being unreachable is a passing fault
    (the run fails, the ticket is kept), or a login would follow every KMS hiccup."""
    key = account_key(ALICE)
    aws.store.save_account(key, AccountState(ticket=TICKET, creds_tag="h1:tag"))
    cold_vault = Vault(aws.key_arn, client=aws.kms)

    def unreachable(account_id: str, ciphertext: bytes) -> bytes:
        raise StateUnavailable("KMS answered ThrottlingException")

    monkeypatch.setattr(cold_vault, "_decrypt", unreachable)
    cold = DynamoDBStateStore(aws.table, client=aws.dynamodb, clock=aws.clock, sealer=VaultSealer(cold_vault))
    with pytest.raises(StateUnavailable):
        cold.load(key)


def test_the_sealed_state_a_container_remembers_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new ticket or JWT adds to the cache and old ones leave only by eviction: a byte bound keeps a
    long-lived container's memory flat."""
    import linkup_sync.hosted.vault as vault_module

    monkeypatch.setattr(vault_module, "STATE_CACHE_MAX_BYTES", 10_000)
    vault = Vault("arn:aws:kms:us-east-1:123456789012:key/x", client=ForeignKms())
    for n in range(100):
        vault._state_put(f"acct{n:08d}", b"p" * 300 + bytes([n]), b"c" * 500 + bytes([n]))
    assert vault._state_bytes <= 10_000
    assert vault._state_bytes == sum(len(v) for v in vault._state.values())
    newest = vault._state_get(("p", "acct00000099", hashlib.sha256(b"p" * 300 + bytes([99])).digest()))
    assert newest == b"c" * 500 + bytes([99])  # the newest stays, the oldest went
    assert vault._state_get(("p", "acct00000000", hashlib.sha256(b"p" * 300 + bytes([0])).digest())) is None
