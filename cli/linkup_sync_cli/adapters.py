"""The command line's adapters: credentials from the environment (or the stack's secret), state in a
local file (or the stack's table), and the dry run's stand-ins for Nightscout and the state store.

AWS libraries are imported only for --secret-id and --table, so the command also serves people
without AWS. Shared by `sync --once` and `doctor`; imports neither of them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from linkup_sync.errors import ConfigError
from linkup_sync.secret_format import SECRET_KEYS

from .output import shorten_home

if TYPE_CHECKING:
    from linkup_sync.http import Deadline
    from linkup_sync.model import Credentials, Existing, Target
    from linkup_sync.ports import CredentialSource, NightscoutSink, StateStore
    from linkup_sync.readings import Reading
    from linkup_sync.runtime import Dependencies
    from linkup_sync.state.model import AccountState, IncidentKey, StoredState, TargetState

ENV_VERSION = "LINK_UP_CREDENTIALS_VERSION"


# --- credentials ------------------------------------------------------------------------------------


class EnvCredentials:
    """The four secret keys from environment variables with the same names.

    The bad-password breaker is keyed by a credentials version and by a fingerprint of the refused
    credentials; environment variables have no version, so it is $LINK_UP_CREDENTIALS_VERSION or "env",
    and a corrected password lifts the breaker by its other fingerprint. `--reset-login` clears it too.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def get(self) -> Credentials:
        from linkup_sync.secret_format import credentials_from_secret

        missing = [key for key in SECRET_KEYS if not self.env.get(key, "").strip()]
        if missing:
            problems = [f"{key} is not set." for key in missing]
            problems.append(
                "Set the environment variables " + ", ".join(SECRET_KEYS) + " (the same names as in "
                "the secret), or read the stack's secret with --secret-id."
            )
            raise ConfigError(problems, heading="The credentials are incomplete")
        raw = {key: self.env[key] for key in SECRET_KEYS}
        version = self.env.get(ENV_VERSION, "").strip() or "env"
        return credentials_from_secret(
            raw,
            version=version,
            secret_id=None,
            place="the environment variables",
            hint="Fix the environment variables named above (or read the stack's secret with --secret-id).",
        )


class FixedCredentials:
    """Credentials read once (doctor reads them before its checks and hands the same ones to the run)."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds

    def get(self) -> Credentials:
        return self.creds


def credential_source(secret_id: str | None, env: Mapping[str, str]) -> CredentialSource:
    if secret_id:
        from linkup_sync.secrets import SecretsManagerCredentials

        return SecretsManagerCredentials(secret_id)
    return EnvCredentials(env)


def describe_aws_failure(exc: Exception) -> str | None:
    """A safe one-line text for an AWS SDK failure (no credentials, no region, ...), else None."""
    module = type(exc).__module__
    if module.startswith(("botocore", "boto3")):
        return f"AWS could not be used: {exc}"
    return None


# --- state ------------------------------------------------------------------------------------------


def state_store(args: argparse.Namespace, clock: Callable[[], float]) -> StateStore:
    if args.table:
        from linkup_sync.aws import client
        from linkup_sync.state.dynamodb import DynamoDBStateStore

        # The region as for the secret: AWS_REGION, AWS_DEFAULT_REGION, else the one the secret's ARN names.
        dynamodb = client("dynamodb", secret_id=args.secret_id)
        return DynamoDBStateStore(args.table, client=dynamodb, clock=clock)
    from linkup_sync.state.file import FileStateStore, default_state_path

    return FileStateStore(args.state or default_state_path(), clock=clock)


def missing_table(exc: Exception, store: StateStore | None) -> ConfigError | None:
    """A state table that does not exist (or is in another region) needs a person, not a retry: say which
    table and which region were asked. None for any other failure."""
    from linkup_sync.errors import StateUnavailable
    from linkup_sync.state.dynamodb import DynamoDBStateStore

    if not isinstance(exc, StateUnavailable) or "ResourceNotFound" not in exc.detail:
        return None
    if not isinstance(store, DynamoDBStateStore):
        return None
    region = store.client.meta.region_name or "this region"
    return ConfigError(
        [
            f"There is no DynamoDB table {store.table_name} in the AWS region {region}.",
            "Fix: give --table the stack's output StateTableName, and the stack's region: set AWS_REGION "
            "(or AWS_DEFAULT_REGION), or give --secret-id as the secret's full ARN, which names it.",
        ],
        heading="The state table cannot be found",
    )


def state_label(store: StateStore) -> str:
    """Where the state is kept, in the words of the store the command line chose (state_store)."""
    from linkup_sync.state.dynamodb import DynamoDBStateStore
    from linkup_sync.state.file import FileStateStore

    if isinstance(store, FileStateStore):
        return shorten_home(store.path)
    if isinstance(store, DynamoDBStateStore) and store.table_name:
        return f"DynamoDB table {store.table_name}"
    return "the state store"


class NoRecordStore:
    """A store that keeps logins and breakers (they protect the account) but records no upload."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner

    def load(self, key: str) -> StoredState:
        return self.inner.load(key)

    def save_account(self, key: str, account: AccountState) -> AccountState:
        return self.inner.save_account(key, account)

    def acquire_login_lock(self, key: str, now: float, seconds: int) -> bool:
        return self.inner.acquire_login_lock(key, now, seconds)

    def record_upload(self, key: str, target: TargetState, added: Iterable[int]) -> TargetState:
        return target

    def mark_incidents(self, key: str, opened: Iterable[IncidentKey], closed: Iterable[IncidentKey]) -> None:
        """A dry run tells nobody, so it marks nothing either."""


@dataclass
class CollectingSink:
    """Stands in for Nightscout: keeps what would be uploaded and sends nothing.

    With `reader` (the real uploader of the target), the read-back of what Nightscout already holds is
    asked of Nightscout itself, exactly as the real run asks it, so a dry run selects what the real run
    will upload. It only reads (GET); nothing is ever written through it.
    """

    readings: list[Reading] = field(default_factory=list)
    sensor_starts: list[tuple[str, int]] = field(default_factory=list)
    reader: NightscoutSink | None = None
    requests_made: int = 0  # the reader's (reads only)

    def upload(self, readings: Sequence[Reading]) -> int:
        self.readings.extend(readings)
        return len(readings)

    def post_sensor_start(self, *, serial: str, activated_at: int) -> None:
        self.sensor_starts.append((serial, activated_at))

    def existing_sgv(self, since_ms: int) -> Existing:
        if self.reader is not None:
            try:
                return self.reader.existing_sgv(since_ms)
            finally:
                self.requests_made = self.reader.requests_made
        # doctor: nothing is asked, every gap shows as LibreLink Up's history would fill it.
        from linkup_sync.model import Existing

        return Existing(instants=(), complete_since_ms=since_ms)


def collecting_factory(
    sinks: list[CollectingSink], *, check_url: bool, read_back: bool = False
) -> Callable[[Dependencies, Target, TargetState, Deadline], CollectingSink]:
    """read_back: ask Nightscout what it holds, through the real uploader (the dry run); doctor does not."""

    def factory(deps: Dependencies, target: Target, stored: TargetState, deadline: Deadline) -> CollectingSink:
        from linkup_sync.runtime import build_sink, nightscout_base_url

        if check_url:  # the same failure as the real uploader's (runtime.build_sink)
            nightscout_base_url(target, deps.settings, heading="The Nightscout settings cannot be used")
        sink = CollectingSink(reader=build_sink(deps, target, stored, deadline) if read_back else None)
        sinks.append(sink)
        return sink

    return factory


def reset_login(store: StateStore, key: str) -> list[str]:
    """Forget the stored blocks on logging in, except a running LibreLink Up lockout. Returns what was cleared."""
    account = store.load(key).account
    changes: dict[str, Any] = {}
    cleared: list[str] = []
    if account.bad_credentials_version is not None:
        changes["bad_credentials_version"] = None
        cleared.append("the block after LibreLink Up rejected the password")
    if account.login_not_before and (account.login_block_reason or "") != "locked":
        changes.update(login_not_before=None, login_block_reason=None)
        cleared.append("the wait for an action in the LibreLink Up app")
    if account.rejected_version:
        changes.update(rejected_version=None, version_retry_at=None)
        cleared.append(f"the block on app version {account.rejected_version}")
    if account.backoff_until or account.backoff_failures:
        changes.update(backoff_until=None, backoff_failures=0, backoff_reason=None)
        cleared.append("the back-off after LibreLink Up errors")
    if changes:
        store.save_account(key, replace(account, **changes))
    return cleared
