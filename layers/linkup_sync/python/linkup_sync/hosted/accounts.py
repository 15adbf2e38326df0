"""An account to add: the JSON the operator gives, checked with the personal stack's rules.

The JSON holds the keys of the personal secret (the flat form or TARGETS) plus the few settings an
account may have of its own. Every problem is reported at once, by key name, never by value.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..ports import Credentials, Target
from ..runtime import nightscout_base_url
from ..settings import FLAT_SECRET_KEYS, Settings, credentials_from_secret, meant_keys, unknown_key_problems
from ..state.model import account_key
from .registry import ACCOUNT_SETTING_KEYS, Account, account_id_for, mask_email
from .schedule import DEFAULT_INTERVAL, check_interval
from .vault import Vault

INTERVAL_KEY = "SYNC_INTERVAL_MINUTES"
PLACE = "the account's JSON"
HEADING = "The account cannot be added"
# What an incident announced on the person's Nightscout tells them to do about credentials.
HOSTED_HINT = "tell whoever runs your LibreLink Up bridge the new value (they run: linkup-sync accounts add --replace)"


@dataclass(frozen=True)
class NewAccount:
    id: str
    state_key: str
    interval: int
    settings: dict[str, str]
    email_masked: str
    people: int
    plaintext: bytes = field(repr=False)


def _setting_text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def check_account(raw: object) -> NewAccount:
    """The account to store, or a ConfigError listing every problem of the JSON."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ConfigError(
                ["Standard input is not JSON: give one JSON object, e.g. < account.json."], heading=HEADING
            ) from None
    if not isinstance(raw, dict):
        raise ConfigError(["The account's JSON must be one object {...}."], heading=HEADING)
    problems: list[str] = []
    own = {key: raw[key] for key in ACCOUNT_SETTING_KEYS if key in raw}
    secret_part = {key: value for key, value in raw.items() if key not in own and key != INTERVAL_KEY}
    # The secret's rules know only the secret's keys: they would take LINK_UP_REGON for LINK_UP_USERNAME.
    known = (*FLAT_SECRET_KEYS, "TARGETS", *ACCOUNT_SETTING_KEYS, INTERVAL_KEY)
    only_ours = set(known) - {*FLAT_SECRET_KEYS, "TARGETS"}
    misspelt = {k: v for k, v in secret_part.items() if meant_keys({k: v}, known) & only_ours}
    problems += unknown_key_problems(misspelt, known, PLACE)
    secret_part = {key: value for key, value in secret_part.items() if key not in misspelt}
    settings = {key: _setting_text(value) for key, value in own.items()}
    try:
        Settings.from_env(settings, need_aws=False)
    except ConfigError as exc:
        problems += exc.problems
    interval = DEFAULT_INTERVAL
    if INTERVAL_KEY in raw:
        try:
            interval = check_interval(raw[INTERVAL_KEY])
        except ValueError as exc:
            problems.append(str(exc))
    creds: Credentials | None = None
    try:
        creds = credentials_from_secret(secret_part, version="", secret_id=None, hint=" ", place=PLACE)
    except ConfigError as exc:
        problems += [p for p in exc.problems if p.strip()]
    # The sites' addresses are read from the JSON itself, not from the credentials, so an http:// site
    # is reported together with a missing password rather than only once the password is fixed.
    listed = secret_part.get("TARGETS")
    site_settings = Settings.from_env({}, need_aws=False)
    for i, entry in enumerate(listed if isinstance(listed, list) else [secret_part], start=1):
        url = entry.get("NIGHTSCOUT_URL") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url.strip():
            continue  # missing or empty: credentials_from_secret said so
        try:
            nightscout_base_url(Target(None, url.strip(), nightscout_token=""), site_settings, heading=HEADING)
        except ConfigError as exc:
            where = f" (TARGETS entry {i})" if "TARGETS" in raw else ""
            problems += [p + where for p in exc.problems]
    if problems or creds is None:
        raise ConfigError(problems, heading=HEADING)
    return NewAccount(
        id=account_id_for(creds.username),
        state_key=account_key(creds.username),
        interval=interval,
        settings=settings,
        email_masked=mask_email(creds.username),
        people=len(creds.targets),
        plaintext=json.dumps(secret_part, separators=(",", ":"), sort_keys=True).encode(),
    )


def seal_account(new: NewAccount, vault: Vault) -> Account:
    """Encrypt the credentials for this account only; the registry item to store."""
    ciphertext, key_arn = vault.seal(new.id, new.plaintext)
    return Account(
        id=new.id,
        state_key=new.state_key,
        interval=new.interval,
        ciphertext=ciphertext,
        key_id=key_arn,
        cred_version=uuid.uuid4().hex,
        email_masked=new.email_masked,
        people=new.people,
        settings=dict(new.settings),
    )


def account_credentials(account: Account, plaintext: bytes) -> Credentials:
    """The decrypted JSON as credentials (checked again: a stored item may predate a rule)."""
    data: Any = plaintext.decode("utf-8", errors="replace")
    return credentials_from_secret(
        data, version=account.cred_version, secret_id=None, hint="Fix: " + HOSTED_HINT, place=PLACE
    )
