"""One client factory (issue 25): every adapter's boto3 client comes from linkup_sync.aws, made on first use
through one ClientSlot, in the region every other adapter of the run uses, with the same timeouts and
retries. No module of the layer, the handlers or the command line builds a client of its own, and no
adapter writes its own "client on first use" property.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from tools.local_stack import create_state_table

from linkup_sync import aws
from linkup_sync.alerts import SnsAlerts
from linkup_sync.errors import ConfigError
from linkup_sync.hosted.dispatch import SqsQueue
from linkup_sync.hosted.vault import Vault
from linkup_sync.runtime import Dependencies
from linkup_sync.secrets import SecretsManagerCredentials
from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.incidents import DynamoDBIncidentStore
from tests.unit.test_aws_clients import expect_bounded

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "linkup_sync" / "python" / "linkup_sync"
# The layer, the handlers and the command line: everything that may build a client.
CODE = [ROOT / "layers", ROOT / "functions", ROOT / "cli"]
SECRET_REGION = "eu-west-1"
SECRET_ARN = f"arn:aws:secretsmanager:{SECRET_REGION}:123456789012:secret:linkup-sync-AbCdEf"
TOPIC_ARN = f"arn:aws:sns:{SECRET_REGION}:123456789012:linkup-sync-alerts"
TABLE = "factory-state"


def python_files() -> Iterator[Path]:
    for folder in CODE:
        yield from (path for path in folder.rglob("*.py") if path != LAYER / "aws.py")


def lazy_client_properties(source: str) -> list[int]:
    """Lines of properties that make a client themselves: a `client` property that does more than
    return its ClientSlot's get(), or any check whether an attribute named like a client is None yet."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == "client":
            decorated = any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)
            body = [stmt for stmt in node.body if not isinstance(stmt, ast.Expr)]  # a docstring may stay
            delegates = (
                len(body) == 1
                and isinstance(body[0], ast.Return)
                and isinstance(body[0].value, ast.Call)
                and isinstance(body[0].value.func, ast.Attribute)
                and body[0].value.func.attr == "get"
                and not body[0].value.args
            )
            if decorated and not delegates:
                found.append(node.lineno)
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Attribute)
            and "client" in node.left.attr
            and any(isinstance(op, ast.Is) for op in node.ops)
        ):
            found.append(node.lineno)
    return found


def boto3_clients(source: str) -> list[int]:
    """Lines that build a boto3 client or resource: boto3.client(...), boto3.Session(...).client(...),
    session.client(...), boto3.resource(...)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or node.attr not in ("client", "resource"):
            continue
        target = node.value
        if isinstance(target, ast.Call):  # boto3.Session(...).client, boto3.session.Session().client
            target = target.func
        names = [
            n.id if isinstance(n, ast.Name) else n.attr
            for n in ast.walk(target)
            if isinstance(n, ast.Name | ast.Attribute)
        ]
        if any(name in ("boto3", "session", "Session") for name in names):
            found.append(node.lineno)
    return found


def test_no_module_but_aws_py_builds_a_boto3_client() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in python_files()
        for line in boto3_clients(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_no_adapter_writes_its_own_client_on_first_use() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in python_files()
        for line in lazy_client_properties(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_detectors_see_what_they_look_for() -> None:
    """Each detector flags the code it exists to keep out (so an empty list above means something)."""
    old_alerts = (
        "class A:\n"
        "    @property\n"
        "    def client(self):\n"
        "        if self._client is None:\n"
        "            self._client = boto3.client('sns')\n"
        "        return self._client\n"
    )
    assert lazy_client_properties(old_alerts) == [3, 4]
    assert boto3_clients(old_alerts) == [5]
    assert boto3_clients("c = boto3.Session(profile_name='x').client('sts')\n") == [1]
    assert boto3_clients("c = boto3.session.Session().client('sts')\n") == [1]
    assert boto3_clients("from linkup_sync.aws import client\nc = client('sts', region='eu-west-1')\n") == []
    slot = "class A:\n    @property\n    def client(self):\n        return self._client.get()\n"
    assert lazy_client_properties(slot) == []


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials for moto and no region at all in the environment: only the secret's ARN names it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/linkup-sync-test-config")
    with mock_aws():
        yield


def deployed_in_the_secrets_region() -> None:
    create_state_table(boto3.client("dynamodb", region_name=SECRET_REGION), TABLE)
    boto3.client("sns", region_name=SECRET_REGION).create_topic(Name="linkup-sync-alerts")


def personal_stack_env() -> dict[str, str]:
    return {"STATE_TABLE_NAME": TABLE, "CREDENTIALS_SECRET_ID": SECRET_ARN, "ALERT_TOPIC_ARN": TOPIC_ARN}


def test_alerts_and_incidents_take_the_region_from_the_secret_arn_like_the_state(no_region: None) -> None:
    """Before: the state store and the alerts asked boto3 for a region and found none (a ConfigError), the
    secret alone read it from its ARN. Now every adapter of the run works in the secret's region."""
    deployed_in_the_secrets_region()
    deps = Dependencies.from_env(personal_stack_env())
    assert deps.alerts is not None and deps.incidents is not None
    assert isinstance(deps.store, DynamoDBStateStore) and isinstance(deps.incidents, DynamoDBIncidentStore)
    assert isinstance(deps.alerts, SnsAlerts) and isinstance(deps.credentials, SecretsManagerCredentials)
    clients = [deps.store.client, deps.incidents.client, deps.alerts.client, deps.credentials.provider.client]
    assert [c.meta.region_name for c in clients] == [SECRET_REGION] * 4
    for made in clients:
        expect_bounded(made)
    assert deps.incidents.client is deps.store.client  # one connection pool for the table
    # and they reach what was deployed there
    assert deps.incidents.load_incidents() == {}
    deps.alerts.publish("subject", "body")
    assert deps.alerts.published == 1


def test_the_incident_store_on_its_own_finds_the_region_too(no_region: None) -> None:
    deployed_in_the_secrets_region()
    alone = DynamoDBIncidentStore(TABLE, secret_id=SECRET_ARN)
    assert alone.client.meta.region_name == SECRET_REGION
    expect_bounded(alone.client)
    assert alone.load_incidents() == {}


def test_aws_region_wins_over_the_secret_arn_for_every_adapter(
    no_region: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    deps = Dependencies.from_env(personal_stack_env())
    assert deps.alerts is not None and deps.incidents is not None
    assert isinstance(deps.incidents, DynamoDBIncidentStore) and isinstance(deps.alerts, SnsAlerts)
    assert deps.incidents.client.meta.region_name == "ap-southeast-2"
    assert deps.alerts.client.meta.region_name == "ap-southeast-2"


def test_without_any_region_every_adapter_says_how_to_set_one(no_region: None) -> None:
    adapters: list[Callable[[], object]] = [
        lambda: SnsAlerts(TOPIC_ARN).client,
        lambda: DynamoDBIncidentStore(TABLE).client,
        lambda: DynamoDBStateStore(TABLE).client,
        lambda: SqsQueue("https://sqs.example.invalid/queue").client,
        lambda: Vault("arn:aws:kms:eu-west-1:123456789012:key/k").client,
        lambda: SecretsManagerCredentials("linkup-sync").provider,
    ]
    for make in adapters:
        with pytest.raises(ConfigError, match="AWS_REGION"):
            make()


def test_a_slot_makes_its_client_once_on_first_use(no_region: None, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real = aws.client

    def counting(service: str, **kwargs: str | None) -> object:
        made.append(service)
        return real(service, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aws, "client", counting)
    store = DynamoDBStateStore(TABLE, secret_id=SECRET_ARN)
    shared = DynamoDBIncidentStore(TABLE, sharing=store)
    assert made == []  # nothing until a call needs it
    assert shared.client is store.client is store.client
    assert made == ["dynamodb"]
    given = object()
    assert SnsAlerts(TOPIC_ARN, client=given).client is given  # a given client is used as it is
    assert made == ["dynamodb"]


def test_the_setup_commands_clients_keep_botocores_patience(no_region: None) -> None:
    """The setup command calls AWS from a person's shell, perhaps far from the region: its clients keep
    botocore's own timeouts and retries, in the region the person chose."""
    patient = aws.client("cloudformation", region="sa-east-1", patient=True)
    assert patient.meta.region_name == "sa-east-1"
    assert patient.meta.config.connect_timeout == 60
    assert patient.meta.config.read_timeout == 60
    expect_bounded(aws.client("cloudformation", region="sa-east-1"))
