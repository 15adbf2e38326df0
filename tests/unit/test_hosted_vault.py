"""The hosted credentials vault (linkup_sync.hosted.vault) on moto's KMS: sealed for one account only,
and a warm worker's bounded cache of what it decrypted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from linkup_sync.errors import SecretError, StateUnavailable
from linkup_sync.hosted.vault import CONTEXT_KEY, MAX_PLAINTEXT_BYTES, Vault, context
from tests.support.moto_hosted import REGION, CallCounter, FakeClock, aws_env, kms_key

PASSWORD = "correct horse battery staple"
PLAIN = ('{"LINK_UP_PASSWORD":"' + PASSWORD + '","LINK_UP_USERNAME":"fiona@example.invalid"}').encode()
ALICE = "a1a1a1a1a1a1"
BOB = "b2b2b2b2b2b2"


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    aws_env(monkeypatch)
    with mock_aws():
        yield boto3.client("kms", region_name=REGION)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def vault(kms: Any) -> Vault:
    return Vault(kms_key(kms), client=kms, max_entries=3)


def decrypts(vault: Vault) -> CallCounter:
    return CallCounter().attach(vault.client)


def test_seal_then_open(vault: Vault) -> None:
    ciphertext, key_arn = vault.seal(ALICE, PLAIN)
    assert key_arn == vault.key_id and PASSWORD.encode() not in ciphertext
    assert vault.open(ALICE, ciphertext) == PLAIN
    assert (vault.encrypts, vault.decrypts) == (1, 1)


def test_the_encryption_context_names_the_account(vault: Vault, kms: Any) -> None:
    ciphertext, _ = vault.seal(ALICE, PLAIN)
    assert context(ALICE) == {CONTEXT_KEY: ALICE}
    assert kms.decrypt(CiphertextBlob=ciphertext, EncryptionContext=context(ALICE))["Plaintext"] == PLAIN
    with pytest.raises(ClientError):
        kms.decrypt(CiphertextBlob=ciphertext)  # without the context KMS refuses it


def test_one_accounts_ciphertext_cannot_be_opened_as_another(vault: Vault) -> None:
    ciphertext, _ = vault.seal(ALICE, PLAIN)
    with pytest.raises(SecretError) as caught:
        vault.open(BOB, ciphertext)
    assert "do not belong to this account" in caught.value.message and "--replace" in caught.value.message
    assert vault.cached() == 0  # nothing of Alice's is kept under Bob's name


def test_a_ciphertext_of_another_key_is_refused(vault: Vault, kms: Any) -> None:
    foreign = Vault(kms_key(kms), client=kms)
    ciphertext, _ = foreign.seal(ALICE, PLAIN)
    with pytest.raises(SecretError):
        vault.open(ALICE, ciphertext)


def test_the_cache_spares_a_second_decrypt(vault: Vault) -> None:
    ciphertext, _ = vault.seal(ALICE, PLAIN)
    calls = decrypts(vault)
    assert vault.open(ALICE, ciphertext) == PLAIN
    assert vault.open(ALICE, ciphertext) == PLAIN
    assert calls.count("Decrypt") == 1 and vault.cached() == 1


def test_a_replaced_ciphertext_is_decrypted_again(vault: Vault) -> None:
    old, _ = vault.seal(ALICE, PLAIN)
    vault.open(ALICE, old)
    new_plain = PLAIN.replace(PASSWORD.encode(), b"a new password")
    new, _ = vault.seal(ALICE, new_plain)
    calls = decrypts(vault)
    assert vault.open(ALICE, new) == new_plain
    assert calls.count("Decrypt") == 1


def test_an_entry_is_kept_while_its_ciphertext_is_unchanged(vault: Vault, clock: FakeClock) -> None:
    """Issue 25 changed this: the entry no longer expires after an hour (that Decrypt was the hosted
    hourly run's 4th AWS call). A replaced account or a failed login still decrypts again (tests above
    and below)."""
    ciphertext, _ = vault.seal(ALICE, PLAIN)
    vault.open(ALICE, ciphertext)
    calls = decrypts(vault)
    for _ in range(48):
        clock.tick(3600)
        assert vault.open(ALICE, ciphertext) == PLAIN
    assert calls.count("Decrypt") == 0
    vault.forget(ALICE)  # what the worker does after a login failure
    vault.open(ALICE, ciphertext)
    assert calls.count("Decrypt") == 1


def test_the_least_recently_used_entry_goes_first(vault: Vault) -> None:
    sealed = {name: vault.seal(name, PLAIN)[0] for name in ("a", "b", "c", "d")}
    for name in ("a", "b", "c"):
        vault.open(name, sealed[name])
    vault.open("a", sealed["a"])  # a is used again: b is now the oldest
    vault.open("d", sealed["d"])
    assert vault.cached() == 3
    calls = decrypts(vault)
    for name in ("a", "c", "d"):
        vault.open(name, sealed[name])
    assert calls.count("Decrypt") == 0
    vault.open("b", sealed["b"])
    assert calls.count("Decrypt") == 1 and vault.cached() == 3


def test_forget_drops_one_account(vault: Vault) -> None:
    alice, _ = vault.seal(ALICE, PLAIN)
    bob, _ = vault.seal(BOB, PLAIN)
    vault.open(ALICE, alice)
    vault.open(BOB, bob)
    vault.forget(ALICE)
    vault.forget("never-seen")
    calls = decrypts(vault)
    vault.open(BOB, bob)
    vault.open(ALICE, alice)
    assert calls.count("Decrypt") == 1


def test_too_much_plaintext_is_refused_before_kms(vault: Vault) -> None:
    calls = decrypts(vault)
    vault.seal(ALICE, b"x" * MAX_PLAINTEXT_BYTES)
    big = PLAIN + b" " * MAX_PLAINTEXT_BYTES
    with pytest.raises(SecretError) as caught:
        vault.seal(ALICE, big)
    assert str(len(big)) in caught.value.message and str(MAX_PLAINTEXT_BYTES) in caught.value.message
    assert PASSWORD not in caught.value.message
    assert calls.count("Encrypt") == 1


def test_sealing_needs_a_key() -> None:
    with pytest.raises(SecretError, match="--key-id"):
        Vault(None, client=object()).seal(ALICE, PLAIN)


class RefusingKms:
    """A KMS that answers every call with one error code (moto does not model disabled keys)."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.calls = 0

    def _refuse(self, operation: str) -> Any:
        self.calls += 1
        raise ClientError({"Error": {"Code": self.code, "Message": "refused"}}, operation)

    def encrypt(self, **_: Any) -> Any:
        return self._refuse("Encrypt")

    def decrypt(self, **_: Any) -> Any:
        return self._refuse("Decrypt")


@pytest.mark.parametrize("code", ["DisabledException", "KMSInvalidStateException", "AccessDeniedException"])
def test_an_unusable_key_names_the_fix(code: str) -> None:
    vault = Vault("arn:aws:kms:us-east-1:123456789012:key/k", client=RefusingKms(code))
    for attempt in (lambda: vault.seal(ALICE, PLAIN), lambda: vault.open(ALICE, b"sealed")):
        with pytest.raises(SecretError) as caught:
            attempt()
        message = caught.value.message
        assert code in message and "enabled" in message and "CredentialsKeyArn" in message
        assert PASSWORD not in message and ALICE not in message


def test_a_passing_kms_problem_is_state_unavailable() -> None:
    """Throttling or a network error: the next run tries again, nobody has to act."""
    vault = Vault("k", client=RefusingKms("ThrottlingException"))
    with pytest.raises(StateUnavailable, match="ThrottlingException"):
        vault.open(ALICE, b"sealed")

    class Unreachable:
        def decrypt(self, **_: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="https://kms.us-east-1.amazonaws.com")

    with pytest.raises(StateUnavailable) as caught:
        Vault("k", client=Unreachable()).open(ALICE, b"sealed")
    assert "amazonaws" not in caught.value.message


def test_no_message_contains_the_plaintext(vault: Vault) -> None:
    ciphertext, _ = vault.seal(ALICE, PLAIN)
    messages = []
    for attempt in (
        lambda: vault.open(BOB, ciphertext),
        lambda: vault.open(ALICE, ciphertext[:-4] + b"xxxx"),
        lambda: vault.seal(ALICE, PLAIN * 100),
    ):
        with pytest.raises(SecretError) as caught:
            attempt()
        messages.append(str(caught.value))
    assert all(PASSWORD not in m and "fiona" not in m for m in messages)
