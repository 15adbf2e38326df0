"""The hosted core on moto's in-process AWS (no socket): the state table from template.yaml, a KMS key,
and accounts as the command line would store them. Shared by tests/unit/test_hosted_*.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from moto import mock_aws
from tools.local_stack import TEMPLATE_PATH, create_state_table

from linkup_sync.hosted.registry import Account, Registry, account_id_for, mask_email
from linkup_sync.hosted.vault import Vault
from linkup_sync.hosted.worker import Worker
from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.model import account_key
from tests.support.template import REPO_ROOT

if TYPE_CHECKING:
    from tools.hosted_stack import HostedStack

NOW = 1_800_000_000.0  # Friday 2027-01-15 08:00:00 UTC
REGION = "us-east-1"
TABLE = "linkup-sync-hosted-state"
# The hosted stack's own template once it exists; its StateTable is the personal stack's design.
STATE_TABLE_TEMPLATE = REPO_ROOT / "hosted.yaml" if (REPO_ROOT / "hosted.yaml").exists() else TEMPLATE_PATH


class FakeClock:
    """Unix time that moves only when a test says so."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class CallCounter:
    """Counts the AWS operations a boto3 client makes (a botocore event hook: the real calls, not a mock)."""

    calls: list[str] = field(default_factory=list)

    def attach(self, client: Any) -> CallCounter:
        client.meta.events.register("before-call.*.*", self._seen)
        return self

    def _seen(self, model: Any, **_: Any) -> None:
        self.calls.append(str(model.name))

    def count(self, operation: str) -> int:
        return self.calls.count(operation)


def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region for moto; never a real endpoint or profile."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@contextlib.contextmanager
def moto_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """(DynamoDB client, table name) of a fresh state table in moto, built from the template's StateTable."""
    aws_env(monkeypatch)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        yield client, create_state_table(client, TABLE, STATE_TABLE_TEMPLATE)


def kms_key(client: Any) -> str:
    """A new symmetric key's ARN (what the stack's CredentialsKey output names)."""
    return str(client.create_key(Description="CredentialsKey")["KeyMetadata"]["Arn"])


def sample_account(number: int = 1, *, interval: int = 5, **changes: Any) -> Account:
    """An account as the registry stores it; the ciphertext is opaque here (no KMS needed)."""
    email = f"follower{number}@example.invalid"
    values: dict[str, Any] = {
        "id": account_id_for(email),
        "state_key": account_key(email),
        "interval": interval,
        "ciphertext": f"sealed-{number}".encode(),
        "key_id": "arn:aws:kms:us-east-1:123456789012:key/test",
        "cred_version": f"v{number}",
        "email_masked": mask_email(email),
        "people": 1,
        "settings": {},
    }
    values.update(changes)
    return Account(**values)


@dataclass
class HostedAws:
    """The table, store, registry and vault a worker of the hosted stack uses, all on moto."""

    dynamodb: Any
    kms: Any
    table: str
    key_arn: str
    clock: FakeClock
    store: DynamoDBStateStore
    registry: Registry
    vault: Vault


@contextlib.contextmanager
def hosted_aws(monkeypatch: pytest.MonkeyPatch, clock: FakeClock | None = None) -> Iterator[HostedAws]:
    clock = clock or FakeClock()
    with moto_table(monkeypatch) as (dynamodb, table):
        kms = boto3.client("kms", region_name=REGION)
        key_arn = kms_key(kms)
        yield HostedAws(
            dynamodb=dynamodb,
            kms=kms,
            table=table,
            key_arn=key_arn,
            clock=clock,
            store=DynamoDBStateStore(table, client=dynamodb, clock=clock),
            registry=Registry(table, client=dynamodb, clock=clock),
            vault=Vault(key_arn, client=kms),
        )


class Attaches(Protocol):
    """A recorder of a client's requests (tests.support.iam.Recorder, a test's own counter)."""

    def attach(self, client: Any) -> Any: ...


def worker_on_recorded_clients(stack: HostedStack, recorder: Attaches) -> Worker:
    """The hosted stack's worker on its own DynamoDB and KMS clients, each request seen by `recorder`
    (unsigned: moto in process needs no credentials)."""
    unsigned = Config(signature_version=UNSIGNED)
    ddb = recorder.attach(boto3.client("dynamodb", config=unsigned))
    kms = recorder.attach(boto3.client("kms", config=unsigned))
    return Worker(
        registry=Registry(stack.table, ddb, stack.clock),
        vault=Vault(stack.key_arn, kms),
        store=DynamoDBStateStore(stack.table, ddb, stack.clock),
        stack_env=stack.stack_env,
        clock=stack.clock,
    )
