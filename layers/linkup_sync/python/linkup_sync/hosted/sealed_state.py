"""The hosted accounts' state, with its secrets sealed by the stack's key (issue 21).

The state table of the hosted stack holds many strangers' accounts, and 35 days of backups of it:
a LibreLink Up ticket (a 180-day key to a person's readings), Nightscout's JWT and the credentials'
fingerprints are kept there only as KMS ciphertexts under the account's own encryption context
{"linkup-sync-account": id}, like the credentials in the registry. The personal stack keeps its
table as it is: it holds one person's own account.
"""

from __future__ import annotations

from ..errors import StateUnavailable
from .vault import Vault


def account_of(state_key: str) -> str:
    """The account id a state key belongs to (registry.account_id_for, from the key instead of the e-mail)."""
    prefix, _, digest = state_key.partition("#")
    if prefix != "acct" or len(digest) < 12:
        raise StateUnavailable("a state key that names no hosted account")
    return digest[:12]


class VaultSealer:
    """state.dynamodb.Sealer with the worker's vault: KMS under the account's context, cached by content."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def seal(self, key: str, plaintext: bytes) -> bytes:
        return self.vault.seal_state(account_of(key), plaintext)

    def open(self, key: str, ciphertext: bytes) -> bytes:
        return self.vault.open_state(account_of(key), ciphertext)
