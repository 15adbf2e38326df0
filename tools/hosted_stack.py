"""The hosted stack on one virtual clock: moto (DynamoDB, SQS, KMS), the LibreLink Up simulator with
one follower account per hosted account, and one Nightscout site per account behind NightscoutSites.

It plays the parts AWS plays in hosted.yaml: EventBridge Scheduler calls the dispatcher at the start of
every minute, and Lambda's SQS poller hands the visible messages to the worker in batches and deletes
those the batch response does not name. moto's SQS keeps its own times (delays, visibility): they are
tied to the virtual clock here, so a message sent with a 30-second delay appears 30 virtual seconds
later. Use inside moto's mock_aws() (in-process) or with the AWS variables pointing at a moto server.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from linkup_sync.addresses import ALLOW_LOOPBACK_ENV, SiteAddresses, loopback_allowed
from linkup_sync.hosted.accounts import check_account, seal_account
from linkup_sync.hosted.dispatch import Dispatcher, DispatchReport, SqsQueue
from linkup_sync.hosted.registry import Account, Registry
from linkup_sync.hosted.vault import Vault
from linkup_sync.hosted.worker import BatchResult, Worker
from linkup_sync.state.dynamodb import DynamoDBStateStore
from tools.local_stack import START, TEMPLATE_PATH, create_state_table
from tools.moto_fast import fast_dynamodb, fast_queue_counts
from tools.simulators.clock import VirtualClock
from tools.simulators.librelinkup import LinkUpSimulator
from tools.simulators.nightscout.app import NightscoutStandIn
from tools.simulators.nightscout.sites import NightscoutSites

ROOT = Path(__file__).resolve().parent.parent
HOSTED_TEMPLATE = ROOT / "hosted.yaml"
WORKER_VISIBILITY_S = 360


@contextlib.contextmanager
def sqs_on_clock(clock: Callable[[], float]) -> Iterator[None]:
    """moto's SQS delays and visibility timeouts follow `clock` instead of the wall clock."""
    import moto.sqs.models as sqs_models

    saved = {name: getattr(sqs_models, name) for name in ("unix_time", "unix_time_millis")}
    setattr(sqs_models, "unix_time", lambda *args: clock())  # noqa: B010 - moto does not export them
    setattr(sqs_models, "unix_time_millis", lambda *args: clock() * 1000)  # noqa: B010
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(sqs_models, name, value)


@contextlib.contextmanager
def sqs_retention_check() -> Iterator[None]:
    """moto checks each message it hands out against the queue's retention period by building all the
    queue's attributes, one of which counts every message: the same check, reading that one attribute."""
    import moto.sqs.models as sqs_models

    backend = sqs_models.SQSBackend
    original = backend.is_message_valid_based_on_retention_period

    def valid(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        now = vars(sqs_models)["unix_time"]()  # the clock sqs_on_clock may have put there
        return bool(retention + message.sent_timestamp / 1000 > now)

    setattr(backend, "is_message_valid_based_on_retention_period", valid)  # noqa: B010 - restored below
    try:
        yield
    finally:
        setattr(backend, "is_message_valid_based_on_retention_period", original)  # noqa: B010


@contextlib.contextmanager
def cheap_invocation_ids() -> Iterator[None]:
    """botocore tags each request with a fresh uuid4 (os.urandom: a system call, about a twentieth of
    an in-process DynamoDB call here); a pseudo-random one serves moto as well."""
    import random
    import types

    import botocore.endpoint as endpoint

    original = vars(endpoint)["uuid"]
    ids = random.Random()
    cheap = types.SimpleNamespace(uuid4=lambda: uuid.UUID(int=ids.getrandbits(128), version=4))
    setattr(endpoint, "uuid", cheap)  # noqa: B010 - restored below
    try:
        yield
    finally:
        setattr(endpoint, "uuid", original)  # noqa: B010


@dataclass
class HostedPerson:
    """One hosted account as the test sees it: its follower login, patient and Nightscout site."""

    number: int
    email: str
    password: str
    patient_id: str
    site: NightscoutStandIn
    site_url: str
    account_id: str = ""


@dataclass
class MinuteResult:
    dispatch: DispatchReport
    batches: list[BatchResult] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[str]:
        return Counter(o.status for batch in self.batches for o in batch.outcomes)


class HostedStack:
    def __init__(
        self,
        *,
        start: float = START,
        batch_size: int = 10,
        name: str | None = None,
        patient_history_s: int | None = None,
    ) -> None:
        """`patient_history_s`: how long each new patient has worn the sensor (default: the simulator's
        day), which is what an account's first run finds to upload."""
        self.clock = VirtualClock(start)
        self.batch_size = batch_size
        self.patient_history_s = patient_history_s
        self.llu = LinkUpSimulator(self.clock).start()
        self.ns = NightscoutSites(self.clock).start()
        name = name or f"hosted-{uuid.uuid4().hex[:8]}"
        # moto checks no signature; SigV4 is about a third of the cost of an in-process call
        unsigned = Config(signature_version=UNSIGNED)
        self.ddb = boto3.client("dynamodb", config=unsigned)
        self.sqs = boto3.client("sqs", config=unsigned)
        self.kms = boto3.client("kms", config=unsigned)
        template = HOSTED_TEMPLATE if HOSTED_TEMPLATE.exists() else TEMPLATE_PATH  # same StateTable design
        self.table = create_state_table(self.ddb, f"{name}-state", template)
        self.key_arn = self.kms.create_key(Description="CredentialsKey")["KeyMetadata"]["Arn"]
        self.queue_url = self.sqs.create_queue(
            QueueName=f"{name}-sync", Attributes={"VisibilityTimeout": str(WORKER_VISIBILITY_S)}
        )["QueueUrl"]
        self.registry = Registry(self.table, self.ddb, self.clock)
        self.operator_vault = Vault(self.key_arn, self.kms)  # the command line's
        self.queue = SqsQueue(self.queue_url, self.sqs)
        self.dispatcher = Dispatcher(self.registry, self.queue, self.clock)
        # The simulators run on 127.0.0.1, which a hosted stack refuses unless this test variable is set.
        self.stack_env = {
            "LINK_UP_API_URL": self.llu.url_template,
            "STATE_TABLE_NAME": self.table,
            ALLOW_LOOPBACK_ENV: "true",
        }
        self.sites = SiteAddresses(allow_loopback=loopback_allowed(self.stack_env))  # the operator's check
        self.worker = self.new_worker()
        self.people: list[HostedPerson] = []
        self._patches = contextlib.ExitStack()
        self._patches.enter_context(sqs_on_clock(self.clock))
        self._patches.enter_context(sqs_retention_check())
        self._patches.enter_context(cheap_invocation_ids())
        self._patches.enter_context(fast_dynamodb())
        self._patches.enter_context(fast_queue_counts())

    def new_worker(self, **options: Any) -> Worker:
        """A fresh worker container: its own vault cache and memory of quiet incidents. `options` go to
        Worker (e.g. the container's own HTTP pool)."""
        store = DynamoDBStateStore(self.table, self.ddb, self.clock)
        registry = Registry(self.table, self.ddb, self.clock)
        vault = Vault(self.key_arn, self.kms)
        return Worker(
            registry=registry, vault=vault, store=store, stack_env=self.stack_env, clock=self.clock, **options
        )

    def __enter__(self) -> HostedStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._patches.close()
        self.llu.stop()
        self.ns.stop()

    # --- accounts --------------------------------------------------------------------------------

    def add_person(
        self, *, interval: int | None = None, v3: bool = False, number: int | None = None, **extra: Any
    ) -> HostedPerson:
        """A new follower account; `number` (default: the next) names it, so stacks that each hold a share
        of the accounts (tools/scale.py) give every account its own e-mail, id and schedule offset."""
        number = len(self.people) if number is None else number
        email = f"follower{number}@example.invalid"
        password = f"password-{number}-{uuid.uuid4().hex[:6]}"
        self.llu.add_account(email, password)
        # the simulator's default phase: the newest sample is 57-59 s old at whole minutes
        since = None if self.patient_history_s is None else int(self.clock()) - self.patient_history_s + 2
        patient = self.llu.add_patient(email, start=since)
        site_number, site = self.ns.add_site()
        person = HostedPerson(
            number=number,
            email=email,
            password=password,
            patient_id=patient.patient_id,
            site=site,
            site_url=self.ns.url(site_number),
        )
        raw: dict[str, Any] = {
            "LINK_UP_USERNAME": email,
            "LINK_UP_PASSWORD": password,
            "NIGHTSCOUT_URL": person.site_url,
            "NIGHTSCOUT_API_TOKEN": site.admin_token(),
            "LINK_UP_VERSION": "4.16.0",
            "NIGHTSCOUT_API_V3": v3,
            **extra,
        }
        if interval is not None:
            raw["SYNC_INTERVAL_MINUTES"] = interval
        person.account_id = self.add_account(raw).id
        self.people.append(person)
        return person

    def add_account(self, raw: dict[str, Any], *, replace: bool = False) -> Account:
        sealed = seal_account(check_account(raw, addresses=self.sites), self.operator_vault)
        return self.registry.put(sealed, replace_existing=replace)

    # --- time ------------------------------------------------------------------------------------

    @property
    def minute(self) -> int:
        return int(self.clock() // 60)

    def run_minute(self, *, duplicate: Callable[[dict[str, Any]], bool] | None = None) -> MinuteResult:
        """From second 0 of the current minute to second 0 of the next: dispatch, then deliver each
        second what became visible. `duplicate(message)` True delivers that message twice (SQS's
        at-least-once delivery), in a later batch of the same second."""
        assert self.clock() % 60 == 0, "a minute starts at second 0"
        result = MinuteResult(dispatch=self.dispatcher.dispatch(self.minute))
        for _second in range(60):
            result.batches += self.deliver(duplicate)
            self.clock.advance(1)
        return result

    def deliver(self, duplicate: Callable[[dict[str, Any]], bool] | None = None) -> list[BatchResult]:
        """What Lambda's poller does with the messages visible now: batches to the worker."""
        results: list[BatchResult] = []
        again: list[dict[str, Any]] = []
        drained = False
        while True:
            messages: list[dict[str, Any]] = []
            if not drained:
                messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size).get(
                    "Messages", []
                )
                # moto hands out every visible message up to the maximum: a short batch empties the queue
                drained = len(messages) < self.batch_size
                again += [m for m in messages if duplicate is not None and duplicate(m)]
            if not messages:
                if not again:
                    return results
                messages, again = again[: self.batch_size], again[self.batch_size :]
            results.append(self.invoke(messages))

    def invoke(self, messages: list[dict[str, Any]]) -> BatchResult:
        records = [
            {"messageId": m["MessageId"], "body": m["Body"], "receiptHandle": m["ReceiptHandle"]} for m in messages
        ]
        result = self.worker.handle(records)
        retry = set(result.retry)
        done = [m["ReceiptHandle"] for m in messages if m["MessageId"] not in retry]
        if done:  # a duplicate's handle may be gone already: SQS lists it as failed, which changes nothing
            entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(done)]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return result

    # --- what happened ---------------------------------------------------------------------------

    def logins_by_email(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for request in self.llu.requests:
            if request.path.startswith("/llu/auth/login") and request.method == "POST":
                with contextlib.suppress(ValueError, AttributeError):
                    found[str(json.loads(request.body).get("email", "")).lower()] += 1
        return found
