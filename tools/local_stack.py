"""The real Lambda handler against local stand-ins: no AWS account, no credentials, nothing beyond 127.0.0.1.

A LocalStack owns one virtual clock shared by the LibreLink Up simulator, the Nightscout stand-in and the
bridge, and uses a moto server for DynamoDB and Secrets Manager (the state table is created from
template.yaml). `run()` invokes functions/sync/app.handler exactly as the schedule would; `cold_run()`
does the same in a fresh Python process (`python -m tools.run_handler`), whose only memory of earlier
runs is what DynamoDB holds.

Used by `make demo` (tools/demo.py) and `make bench` (tools/bench.py). Development tooling only.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import yaml

from tools.run_handler import LocalContext
from tools.simulators.clock import VirtualClock
from tools.simulators.librelinkup import LinkUpSimulator, SimAccount
from tools.simulators.nightscout import NightscoutStandIn

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIR = ROOT / "functions" / "sync"
LAYER_PYTHON_DIR = ROOT / "layers" / "linkup_sync" / "python"
TEMPLATE_PATH = ROOT / "template.yaml"
HOSTED_TEMPLATE_PATH = ROOT / "hosted.yaml"  # the hosted stack: the same StateTable (tests compare them)

EMAIL = "fiona.follower@example.invalid"
PASSWORD = "correct horse battery staple"
START = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC).timestamp()
LOCAL_REGION = "us-east-1"
# The loggers the handler writes its JSON lines through (Powertools' service logger and the package's).
HANDLER_LOGGERS = ("linkup-sync", "linkup_sync")


# --- template.yaml ---------------------------------------------------------------------------------


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short-form tags (!Ref, !Sub, ...) as their long form.

    A subclass, so the process-wide yaml.SafeLoader stays untouched.
    """


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    value: Any
    if tag_suffix == "GetAtt" and isinstance(node, yaml.ScalarNode):  # !GetAtt A.B is [A, B] in long form
        value = loader.construct_scalar(node).split(".", 1)
    elif isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(cast(yaml.MappingNode, node), deep=True)
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def read_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """template.yaml with its intrinsic functions in long form (!Ref x -> {"Ref": "x"})."""
    with path.open(encoding="utf-8") as stream:
        data = yaml.load(stream, Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict):
        raise TypeError(f"{path} is not a YAML mapping")
    return data


def template_resource(logical_id: str, path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """One resource of template.yaml (intrinsic functions in long form)."""
    template = read_template(path)
    return cast(dict[str, Any], template["Resources"][logical_id])


def create_state_table(client: DynamoDBClient, table_name: str, path: Path = TEMPLATE_PATH) -> str:
    """Create the state table with the key schema, billing mode and TTL of the StateTable in ``path``."""
    properties = template_resource("StateTable", path)["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": properties["BillingMode"],
    }
    if properties.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    client.create_table(**kwargs)
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    return table_name


def function_memory_mb(path: Path = TEMPLATE_PATH) -> int:
    """The default MemorySize parameter of template.yaml (what the function gets unless overridden)."""
    with path.open(encoding="utf-8") as stream:
        template = yaml.load(stream, Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader subclass
    return int(template["Parameters"]["MemorySize"]["Default"])


# --- local AWS ---------------------------------------------------------------------------------------


def local_aws_variables(endpoint: str) -> dict[str, str]:
    """Environment that points boto3 at the moto server with dummy credentials (and nowhere else)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


_REMOVED_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@contextlib.contextmanager
def aws_environment(endpoint: str) -> Iterator[dict[str, str]]:
    """Set the local AWS variables in os.environ for the duration; restore the previous values afterwards."""
    variables = local_aws_variables(endpoint)
    names = (*variables, *_REMOVED_AWS_VARIABLES)
    saved = {name: os.environ.get(name) for name in names}
    for name in _REMOVED_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(variables)
    try:
        yield variables
    finally:
        restore_environ(saved)


def restore_environ(saved: dict[str, str | None]) -> None:
    """Put variables back as they were (None: was not set)."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def load_function(name: str, module_name: str | None = None) -> Any:
    """functions/<name>/app.py under a module name of its own (the handlers are all called app)."""
    import importlib.util

    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(module_name or f"hosted_{name}_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 (a free port); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    access_log = logging.getLogger("werkzeug")  # one stderr line per AWS call otherwise
    level = access_log.level
    access_log.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        access_log.setLevel(level)


@dataclass
class AwsCalls:
    """botocore 'before-call' handler: records the name of every AWS API call a client makes."""

    calls: list[str] = field(default_factory=list)

    def __call__(self, model: Any = None, **_: Any) -> None:
        self.calls.append(model.name if model is not None else "?")


# --- the handler's output ----------------------------------------------------------------------------


class ByteCounter(io.StringIO):
    """A text stream that only counts the UTF-8 bytes written to it (what CloudWatch Logs would ingest)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.lines = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode("utf-8"))
        self.lines += text.count("\n")
        return len(text)


@contextlib.contextmanager
def handler_output(sink: TextIO) -> Iterator[TextIO]:
    """Send the handler's JSON log lines and EMF metric blobs to `sink` instead of stdout.

    Powertools binds its log handler to the sys.stdout of the moment the logger was created, and prints
    metrics with print(); both are redirected, and restored afterwards.
    """
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    for name in HANDLER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                old = handler.setStream(sink)
                if old is not None:
                    swapped.append((handler, old))
    try:
        with contextlib.redirect_stdout(sink):
            yield sink
    finally:
        for handler, old in reversed(swapped):
            handler.setStream(old)


def handler_module() -> Any:
    """functions/sync/app.py, imported the way Lambda imports it (its folder on sys.path)."""
    if str(FUNCTION_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTION_DIR))
    import app

    return app


# --- the stack ---------------------------------------------------------------------------------------


class LocalStack:
    """Both simulators on one virtual clock, the moto endpoint, and the real handler.

    The caller provides the moto endpoint and the AWS variables in os.environ (see `aws_environment`).
    """

    def __init__(
        self,
        moto_endpoint: str,
        *,
        start: float = START,
        region: str = "eu",
        log_sink: TextIO | None = None,
    ) -> None:
        self.clock = VirtualClock(start)
        self.llu = LinkUpSimulator(self.clock).start()
        self.ns = NightscoutStandIn(self.clock).start()
        self.moto_endpoint = moto_endpoint
        self.account: SimAccount = self.llu.add_account(EMAIL, PASSWORD, home_region=region)
        self.ns_token = self.ns.uploader_token()
        self.env: dict[str, str] = {}
        self.aws_calls = AwsCalls()
        self.secret_arn = ""
        self.topic_arn = ""
        self.inbox_url = ""
        self._inbox: list[dict[str, str]] = []
        # The handler's logs and metrics of in-process runs go here (None: to stdout as in Lambda).
        self.log_sink = log_sink
        self.last_cold_output = ""
        self.deadline_s: float | None = None  # overrides the run deadline of new containers when set
        self._deps: Any = None

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.llu.stop()
        self.ns.stop()
        if self._deps is not None:
            app = handler_module()
            if app.DEPENDENCIES is self._deps:
                app.DEPENDENCIES = None
            self._deps = None
        from linkup_sync.observability import metrics

        metrics().clear_metrics()

    # --- AWS resources -----------------------------------------------------------------------------

    def provision(
        self,
        *,
        region_setting: str = "EU",
        connection: str = "",
        name: str | None = None,
        password: str = PASSWORD,
        ns_token: str | None = None,
        ns_url: str | None = None,
        **extra_env: str,
    ) -> None:
        """Create the state table (from template.yaml) and the credentials secret in moto."""
        import boto3

        name = name or f"linkup-sync-{uuid.uuid4().hex[:12]}"  # unique: id() repeats within a process
        ddb = boto3.client("dynamodb", endpoint_url=self.moto_endpoint)
        table = create_state_table(ddb, f"{name}-state")
        sm = boto3.client("secretsmanager", endpoint_url=self.moto_endpoint)
        self.secret_arn = sm.create_secret(Name=f"{name}-credentials")["ARN"]
        self.put_secret(password=password, ns_token=ns_token, ns_url=ns_url)
        # The alert topic, with a queue subscribed to it standing in for the e-mail inbox.
        sns = boto3.client("sns", endpoint_url=self.moto_endpoint)
        self.topic_arn = sns.create_topic(Name=f"{name}-alerts")["TopicArn"]
        sqs = boto3.client("sqs", endpoint_url=self.moto_endpoint)
        self.inbox_url = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=self.inbox_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=inbox_arn)
        self._inbox = []
        self.env = {
            "LINK_UP_REGION": region_setting,
            "LINK_UP_CONNECTION": connection,
            "LINK_UP_VERSION": "4.16.0",
            "NIGHTSCOUT_API_V3": "false",
            "LINK_UP_API_URL": self.llu.url_template,
            "STATE_TABLE_NAME": table,
            "CREDENTIALS_SECRET_ID": self.secret_arn,
            "ALERT_TOPIC_ARN": self.topic_arn,
            "POWERTOOLS_SERVICE_NAME": "linkup-sync",
            "POWERTOOLS_METRICS_NAMESPACE": "LinkupSync",
            "AWS_ENDPOINT_URL": self.moto_endpoint,
            **extra_env,
        }

    def put_secret(self, *, password: str = PASSWORD, ns_token: str | None = None, ns_url: str | None = None) -> None:
        import boto3

        sm = boto3.client("secretsmanager", endpoint_url=self.moto_endpoint)
        sm.put_secret_value(
            SecretId=self.secret_arn,
            SecretString=json.dumps(
                {
                    "LINK_UP_USERNAME": EMAIL,
                    "LINK_UP_PASSWORD": password,
                    "NIGHTSCOUT_URL": ns_url or self.ns.base_url,
                    "NIGHTSCOUT_API_TOKEN": ns_token or self.ns_token,
                }
            ),
        )

    def emails(self) -> list[dict[str, str]]:
        """Every alert e-mail published to the topic so far ({"subject", "body"}), oldest first."""
        import boto3

        sqs = boto3.client("sqs", endpoint_url=self.moto_endpoint)
        while True:
            got = sqs.receive_message(QueueUrl=self.inbox_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return list(self._inbox)
            for message in messages:
                envelope = json.loads(message["Body"])
                self._inbox.append({"subject": envelope.get("Subject", ""), "body": envelope.get("Message", "")})
                sqs.delete_message(QueueUrl=self.inbox_url, ReceiptHandle=message["ReceiptHandle"])

    def state_items(self) -> list[dict[str, Any]]:
        """Every item of the state table, as DynamoDB returns them (for sizes and checks)."""
        import boto3

        ddb = boto3.client("dynamodb", endpoint_url=self.moto_endpoint)
        items: list[dict[str, Any]] = ddb.scan(TableName=self.env["STATE_TABLE_NAME"]).get("Items", [])
        return items

    def stored_account(self) -> Any:
        """What the state table holds for the follower account (a linkup_sync StoredState)."""
        import boto3

        from linkup_sync.state.dynamodb import DynamoDBStateStore
        from linkup_sync.state.model import account_key

        client = boto3.client("dynamodb", endpoint_url=self.moto_endpoint)
        return DynamoDBStateStore(self.env["STATE_TABLE_NAME"], client=client).load(account_key(EMAIL))

    def stored_ledger(self) -> tuple[int, ...]:
        """The uploaded instants the state table holds (what the next run will not send again)."""
        from linkup_sync.state.model import unpack_ledger

        for item in self.state_items():
            if item.get("sk", {}).get("S", "").startswith("target#"):
                return unpack_ledger(bytes(item.get("uploaded", {}).get("B", b"")))
        return ()

    # --- runs --------------------------------------------------------------------------------------

    def event(self) -> dict[str, str]:
        now = datetime.fromtimestamp(self.clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "scheduled_time": now,
            "execution_id": f"exec-{int(self.clock())}",
            "schedule_arn": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/local",
            "attempt": "1",
        }

    def new_container(self) -> None:
        """Forget the warm dependencies, like a new Lambda container in the same process."""
        self._deps = None

    def run(self) -> dict[str, Any]:
        """One scheduled invocation of the handler in this process (raises what the handler raises)."""
        from aws_lambda_powertools.logging import logger as powertools_logger
        from aws_lambda_powertools.metrics.provider import cold_start
        from aws_lambda_powertools.utilities import parameters

        from linkup_sync.alerts import SnsAlerts
        from linkup_sync.runtime import Dependencies
        from linkup_sync.secrets import SecretsManagerCredentials
        from linkup_sync.state.dynamodb import DynamoDBStateStore

        app = handler_module()
        if self._deps is None:
            parameters.clear_caches()  # type: ignore[no-untyped-call]
            cold_start.is_cold_start = True  # a new container: both Powertools cold-start flags are fresh
            powertools_logger.is_cold_start = True
            deps = Dependencies.from_env(self.env, clock=self.clock)
            if self.deadline_s is not None:
                deps.deadline_s = self.deadline_s
            cast(DynamoDBStateStore, deps.store).client.meta.events.register("before-call", self.aws_calls)
            cast(SecretsManagerCredentials, deps.credentials).provider.client.meta.events.register(
                "before-call", self.aws_calls
            )
            if deps.alerts is not None:
                cast(SnsAlerts, deps.alerts).client.meta.events.register("before-call", self.aws_calls)
            self._deps = deps
        app.DEPENDENCIES = self._deps
        with handler_output(self.log_sink) if self.log_sink is not None else contextlib.nullcontext():
            result: dict[str, Any] = app.handler(self.event(), LocalContext())
        return result

    def cold_run(self, timeout_s: float = 60) -> dict[str, Any]:
        """One invocation in a brand-new Python process (a Lambda cold start); raises if it fails."""
        env = {**os.environ, **self.env, **local_aws_variables(self.moto_endpoint), "PYTHONPATH": str(ROOT)}
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="linkup-sync-event-", delete=False) as f:
            json.dump(self.event(), f)
            event_file = Path(f.name)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "tools.run_handler", "--event", str(event_file), "--now", repr(self.clock())],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        finally:
            event_file.unlink(missing_ok=True)
        self.last_cold_output = proc.stdout + proc.stderr
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"result"')]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"the cold-start process failed (exit {proc.returncode}):\n{self.last_cold_output}")
        result: dict[str, Any] = json.loads(lines[-1])["result"]
        return result

    def tick(self, seconds: float = 300) -> None:
        self.clock.advance(seconds)
