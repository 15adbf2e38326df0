"""The hosted accounts' credentials, encrypted with the stack's KMS key (CredentialsKey).

KMS encrypts the account's JSON directly (it is far below KMS's 4 KB limit), with an encryption
context naming the account: KMS refuses to decrypt one account's ciphertext as another's, and the
worker's key policy only allows Decrypt with that context key. A warm worker keeps what it decrypted
for a bounded number of accounts, as long as the stored ciphertext stays the same: the claim returns the
registry item, so a replaced account (a new ciphertext) is decrypted at once, and an account whose login
failed is forgotten and decrypted again on its next run. No age limit: an hourly Decrypt would make that
run's 4th AWS call (issue 25: at most 3 on every steady-state run), and would tell nothing new.

The worker seals what it stores itself the same way (the LibreLink Up ticket, the credentials'
fingerprints, Nightscout's JWT: hosted/sealed_state.py). Those ciphertexts change only at a login, a
breaker or a new JWT, so they are cached by content: a steady-state run makes no KMS call for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from ..aws import ClientSlot
from ..errors import SecretError, StateUnavailable
from ..state.dynamodb import SealedStateLost

CONTEXT_KEY = "linkup-sync-account"
MAX_PLAINTEXT_BYTES = 4096  # KMS Encrypt's limit
CACHE_MAX_ENTRIES = 20_000  # ~1 KB each: room for every account a container sees at 10,000 accounts
# The sealed state a warm worker remembers (plaintexts and ciphertexts of tickets and JWTs, about 1 KB
# each): enough for every account of a busy container, a small share of its 256 MB.
STATE_CACHE_MAX_BYTES = 32 * 1024 * 1024

READD = "add the account again with `linkup-sync accounts add --replace` (its state and readings are kept)"


def context(account_id: str) -> dict[str, str]:
    return {CONTEXT_KEY: account_id}


class Vault:
    def __init__(
        self,
        key_id: str | None,
        client: Any = None,
        *,
        max_entries: int = CACHE_MAX_ENTRIES,
    ) -> None:
        self.key_id = key_id  # needed to encrypt; decrypting also pins it, so a foreign key is refused
        self._client: ClientSlot[Any] = ClientSlot("kms", client)
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()  # id -> ciphertext, plaintext
        self._lock = threading.Lock()  # the worker runs the accounts of a batch in threads
        self.decrypts = 0
        self.encrypts = 0
        # the worker's own sealed state: ciphertext digest -> plaintext and plaintext digest -> ciphertext
        self._state: OrderedDict[tuple[str, str, bytes], bytes] = OrderedDict()
        self._state_bytes = 0  # what _state holds, bounded by STATE_CACHE_MAX_BYTES in a 256 MB function
        self.state_decrypts = 0
        self.state_encrypts = 0

    @property
    def client(self) -> Any:
        return self._client.get()

    def seal(self, account_id: str, plaintext: bytes) -> tuple[bytes, str]:
        """(ciphertext, ARN of the key that encrypted it)."""
        sealed = self._encrypt(account_id, plaintext)
        self.encrypts += 1
        return sealed

    def _encrypt(self, account_id: str, plaintext: bytes) -> tuple[bytes, str]:
        """One KMS Encrypt under the account's encryption context, uncounted: seal and seal_state count it."""
        if self.key_id is None:
            raise SecretError(["No key given: pass --key-id with the stack's CredentialsKeyArn output."])
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise SecretError(
                [f"The account's JSON is {len(plaintext)} bytes; at most {MAX_PLAINTEXT_BYTES} can be stored."]
            )
        with _kms_errors(account_id):
            reply = self.client.encrypt(KeyId=self.key_id, Plaintext=plaintext, EncryptionContext=context(account_id))
        return bytes(reply["CiphertextBlob"]), str(reply.get("KeyId", self.key_id))

    def open(self, account_id: str, ciphertext: bytes) -> bytes:
        """The plaintext, from the cache while the ciphertext is unchanged."""
        with self._lock:
            hit = self._cache.get(account_id)
            if hit is not None and hit[0] == ciphertext:
                self._cache.move_to_end(account_id)
                return hit[1]
        plaintext = self._decrypt(account_id, ciphertext)
        with self._lock:
            self.decrypts += 1
            self._cache[account_id] = (ciphertext, plaintext)
            self._cache.move_to_end(account_id)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return plaintext

    def _decrypt(self, account_id: str, ciphertext: bytes) -> bytes:
        """One KMS Decrypt under the account's encryption context (another account's ciphertext fails)."""
        params: dict[str, Any] = {"CiphertextBlob": ciphertext, "EncryptionContext": context(account_id)}
        if self.key_id:
            params["KeyId"] = self.key_id
        with _kms_errors(account_id):
            return bytes(self.client.decrypt(**params)["Plaintext"])

    def seal_state(self, account_id: str, plaintext: bytes) -> bytes:
        """Encrypt state for this account; the same plaintext sealed before gives the same ciphertext
        without a KMS call (an unchanged ticket is written back unchanged)."""
        known = self._state_get(("p", account_id, hashlib.sha256(plaintext).digest()))
        if known is not None:
            return known
        ciphertext, _ = self._encrypt(account_id, plaintext)
        with self._lock:
            self.state_encrypts += 1  # `encrypts` stays the operator's credentials
        self._state_put(account_id, plaintext, ciphertext)
        return ciphertext

    def open_state(self, account_id: str, ciphertext: bytes) -> bytes:
        """Decrypt state of this account, once per ciphertext and container (it never changes)."""
        known = self._state_get(("c", account_id, hashlib.sha256(ciphertext).digest()))
        if known is not None:
            return known
        try:
            plaintext = self._decrypt(account_id, ciphertext)
        except SecretError as exc:
            if exc.problems and exc.problems[0].startswith(_NOT_THIS_KEY):
                raise SealedStateLost() from None  # another key or account: no retry can open it
            raise
        with self._lock:
            self.state_decrypts += 1
        self._state_put(account_id, plaintext, ciphertext)
        return plaintext

    def _state_get(self, key: tuple[str, str, bytes]) -> bytes | None:
        with self._lock:
            found = self._state.get(key)
            if found is not None:
                self._state.move_to_end(key)
            return found

    def _state_put(self, account_id: str, plaintext: bytes, ciphertext: bytes) -> None:
        with self._lock:
            for key, value in (
                (("c", account_id, hashlib.sha256(ciphertext).digest()), plaintext),
                (("p", account_id, hashlib.sha256(plaintext).digest()), ciphertext),
            ):
                old = self._state.pop(key, None)
                self._state_bytes += len(value) - (len(old) if old is not None else 0)
                self._state[key] = value
            # Every new ticket or JWT adds two entries and old ones leave only here: bounded by bytes.
            while self._state_bytes > STATE_CACHE_MAX_BYTES and self._state:
                _, evicted = self._state.popitem(last=False)
                self._state_bytes -= len(evicted)

    def forget(self, account_id: str) -> None:
        with self._lock:
            self._cache.pop(account_id, None)

    def cached(self) -> int:
        with self._lock:
            return len(self._cache)


_NOT_THIS_KEY = "The stored credentials do not belong to this account or this key"


@contextlib.contextmanager
def _kms_errors(account_id: str) -> Iterator[None]:
    """KMS's errors as the package's typed ones: a person must act, or the next run tries again."""
    from botocore.exceptions import BotoCoreError, ClientError

    del account_id  # never in a message: the command line and the log name the account already
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("InvalidCiphertextException", "IncorrectKeyException"):
            raise SecretError(
                [f"{_NOT_THIS_KEY}: {READD}."],
                heading="The account's credentials cannot be decrypted",
            ) from None
        if code in ("AccessDeniedException", "DisabledException", "KMSInvalidStateException", "NotFoundException"):
            raise SecretError(
                [
                    f"KMS refused the stack's CredentialsKey ({code}): check that the key is enabled and "
                    "not scheduled for deletion, and that --key-id names the stack's CredentialsKeyArn."
                ],
                heading="The credentials key cannot be used",
            ) from None
        raise StateUnavailable(f"KMS answered {code}" if code.isalnum() else "KMS answered with an error") from None
    except BotoCoreError as exc:
        raise StateUnavailable(type(exc).__name__) from None
