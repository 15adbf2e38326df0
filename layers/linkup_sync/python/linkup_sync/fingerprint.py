"""Which LibreLink Up credentials a stored ticket, chosen person and bad-password block belong to.

A ticket issued for one username and password must never serve another pair (issue 21: a replaced
account with a wrong password went on uploading on the old ticket). So the account item stores a
fingerprint of the credentials next to them, and a run whose credentials have another fingerprint
drops the ticket and the remembered person, and logs in with what it was given.

The fingerprint is never the password, and it must not let someone who reads the table (or one of
its backups) test guessed passwords offline. What keeps it from that depends on the stack:
- hosted: the fingerprint is stored inside the account's KMS ciphertext (hosted/sealed_state.py),
  so it is unreadable without kms:Decrypt under that account's encryption context; a keyed HMAC
  then suffices and costs nothing per run;
- personal stack and command line: no key exists that both the function and the command line (which
  share the table) hold and the table does not, so the fingerprint is scrypt, memory-hard and salted
  per account: each guess costs tens of milliseconds and 16 MiB, computed here once per process.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from .model import Credentials

_LABEL = b"linkup-sync credentials fingerprint v1"
# scrypt's cost: 16 MiB and ~50 ms per fingerprint on one core (once per container and password).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def _identity(creds: Credentials) -> tuple[bytes, bytes]:
    # the username as LibreLink Up compares it (account_key does the same), the password exactly
    return creds.username.strip().lower().encode(), creds.password.encode()


@functools.lru_cache(maxsize=32)
def _scrypt(username: bytes, password: bytes) -> str:
    salt = hashlib.sha256(_LABEL + b"\0" + username).digest()
    return hashlib.scrypt(password, salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=16).hex()


def slow_fingerprint(creds: Credentials) -> str:
    """The personal stack's and the command line's fingerprint (stored in clear next to the ticket)."""
    return "s1:" + _scrypt(*_identity(creds))


def sealed_fingerprint(creds: Credentials) -> str:
    """The hosted stack's fingerprint: only ever stored inside a KMS ciphertext."""
    username, password = _identity(creds)
    return "h1:" + hmac.new(_LABEL, username + b"\0" + password, hashlib.sha256).hexdigest()[:32]
