"""One shard of `make scale`: a whole hosted stack (tools/hosted_stack.py) with a share of the accounts.

The coordinator (tools/scale.py) steps every shard one virtual second at a time: `ready` runs the
dispatcher's Lambda handler at second 0 of each minute and says how many messages are visible;
`deliver` takes the batches the coordinator's model of Lambda's containers allowed, each into the
worker's Lambda handler (functions/worker/app.py) with that container's own Worker (its vault cache,
its memory of quiet incidents, its HTTP pool). Every run takes the product's path: Worker ->
run_once -> LinkUpClient over HTTP -> Nightscout over HTTP -> DynamoDB in moto.

What the shard meters: DynamoDB units (tools/dynamodb_units.py), SQS and KMS calls (botocore hooks),
LibreLink Up and Nightscout requests per run (a counting wrapper around each container's HTTP pool),
the handlers' log output, and LibreLink Up's own request log (virtual arrival times).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.bench import emf_metrics
from tools.dynamodb_units import DynamoDBMeter, stored_item_size
from tools.local_stack import handler_output, load_function, restore_environ

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("setup", "warmup", "hour")
# Which account a run belongs to and what it asked: set by the metered run, read by the hooks.
RUN = threading.local()


@dataclass(frozen=True)
class ShardConfig:
    index: int
    shards: int
    accounts: int  # over all shards; this shard takes every shards-th, from index
    batch_size: int
    warmup_s: int
    hour_s: int


class LogSink(io.StringIO):
    """Counts the UTF-8 bytes the handlers write (what CloudWatch Logs ingests), keeps the metric names."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes: Counter[str] = Counter()
        self.metrics: set[str] = set()
        self.phase = "setup"

    def write(self, text: str) -> int:
        self.bytes[self.phase] += len(text.encode("utf-8"))
        if '"_aws"' in text:
            self.metrics.update(emf_metrics(text))
        return len(text)


@dataclass
class LambdaContext:
    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def load_handler(name: str) -> Any:
    """functions/<name>/app.py under a module name of its own (both hosted handlers are called app)."""
    return load_function(name)


@contextlib.contextmanager
def in_process_aws() -> Iterator[None]:
    """boto3 with a region and nothing from this machine's AWS setup; moto answers in this process."""
    names: tuple[str, ...] = (
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_PROFILE",
    )
    names += ("AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED")
    saved = {name: os.environ.get(name) for name in names}
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    try:
        yield
    finally:
        restore_environ(saved)


class CallCounter:
    """botocore 'before-call' hook: calls by (phase, operation), and KMS calls of the current run."""

    def __init__(self, phase: Callable[[], str], per_run: str | None = None) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self._phase = phase
        self._per_run = per_run
        self._lock = threading.Lock()

    def __call__(self, model: Any = None, **_: Any) -> None:
        with self._lock:
            self.calls[(self._phase(), model.name)] += 1
        counts = getattr(RUN, "counts", None)
        if self._per_run and counts is not None:
            counts[self._per_run] += 1


class Shard:
    def __init__(self, config: ShardConfig) -> None:
        from moto import mock_aws

        from linkup_sync.http import make_pool
        from tools.hosted_stack import HostedStack

        self.config = config
        self._env = contextlib.ExitStack()
        self._env.enter_context(in_process_aws())
        self._mock = mock_aws()
        self._mock.start()
        self.stack = HostedStack(batch_size=config.batch_size, name=f"scale{config.index}")
        self.start = self.stack.clock()
        self.phase = "setup"
        self.ddb_meter = DynamoDBMeter(self.stack.clock, region=self.stack.ddb.meta.region_name, per_thread=RUN)
        self.ddb_meter.attach(self.stack.ddb)
        self.sqs_calls = CallCounter(lambda: self.phase)
        self.kms_calls = CallCounter(lambda: self.phase, per_run="kms")
        self.stack.sqs.meta.events.register("before-call.sqs", self.sqs_calls)
        self.stack.kms.meta.events.register("before-call.kms", self.kms_calls)
        self._make_pool = make_pool
        self.worker_app = load_handler("worker")
        self.dispatch_app = load_handler("dispatch")
        self.dispatch_app.DISPATCHER = self.stack.dispatcher
        self.sink = LogSink()
        self.dispatch_sink = LogSink()
        self.workers: dict[int, Any] = {}
        self.runs: Counter[tuple[str, str]] = Counter()  # (phase, outcome status)
        self.reasons: Counter[str] = Counter()  # "phase|status: reason" of the runs that did not upload
        self.hour_runs: Counter[str] = Counter()  # account id -> runs in the measured hour
        self.web: Counter[tuple[str, str]] = Counter()  # (phase, linkup|nightscout) requests
        self._collected: list[tuple[str, str, Counter[str]]] = []
        self._held: list[list[dict[str, Any]]] = []
        self._lock = threading.Lock()
        for number in range(config.index, config.accounts, config.shards):
            self.stack.add_person(number=number)
        gc.collect()
        gc.freeze()  # the accounts' objects live for the whole run: keep them out of every collection

    # --- the coordinator's steps -----------------------------------------------------------------

    def ready(self, second: int, limit: int) -> int:
        """Move to `second`, dispatch at the start of a minute, take up to `limit` batches of what is
        visible (as Lambda's poller does); the number of batches taken."""
        self.stack.clock.set(self.start + second)
        self.phase = "warmup" if second < self.config.warmup_s else "hour"
        self.ddb_meter.phase = self.sink.phase = self.dispatch_sink.phase = self.phase
        if second % 60 == 0:
            self._dispatch()
            self._forget_moto_instances()
        self._held = []
        while len(self._held) < limit:
            messages = self.stack.sqs.receive_message(
                QueueUrl=self.stack.queue_url, MaxNumberOfMessages=self.config.batch_size
            ).get("Messages", [])
            if messages:
                self._held.append(messages)
            if len(messages) < self.config.batch_size:
                break
        return len(self._held)

    def deliver(self, containers: list[tuple[int, bool]]) -> list[dict[str, Any]]:
        """The batches taken, one per allotted container; those without one go back to the queue."""
        done = [
            self._invoke(container, batch)
            for (container, _new), batch in zip(containers, self._held[: len(containers)], strict=True)
        ]
        for batch in self._held[len(containers) :]:  # no container free: visible again at once
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(batch)
            ]
            self.stack.sqs.change_message_visibility_batch(QueueUrl=self.stack.queue_url, Entries=entries)
        self._held = []
        return done

    def finish(self) -> dict[str, Any]:
        """Everything measured, as plain data for the coordinator."""
        llu_seconds: Counter[int] = Counter()
        logins: Counter[str] = Counter()
        llu_requests: Counter[str] = Counter()
        for request in self.stack.llu.requests:
            second = int(request.time - self.start)
            phase = "warmup" if second < self.config.warmup_s else "hour"
            llu_seconds[second] += 1
            llu_requests[phase] += 1
            if request.path.startswith("/llu/auth/login") and request.method == "POST":
                logins[phase] += 1
        usage = {
            f"{phase}|{name}": [u.calls, u.read_units, u.write_units]
            for (phase, name), u in self.ddb_meter.usage.items()
        }
        sizes = self._stored_sizes()
        return {
            "accounts": len(self.stack.people),
            "start_minute": int(self.start // 60),
            "llu_per_second": dict(llu_seconds),
            "llu_requests": dict(llu_requests),
            "logins": dict(logins),
            "web": {f"{p}|{k}": v for (p, k), v in self.web.items()},
            "dynamodb": usage,
            "due_reads": {f"{minute}|{pk}": size for (minute, pk), size in self.ddb_meter.due_reads.items()},
            "sqs": {f"{p}|{op}": n for (p, op), n in self.sqs_calls.calls.items()},
            "kms": {f"{p}|{op}": n for (p, op), n in self.kms_calls.calls.items()},
            "log_bytes": dict(self.sink.bytes),
            "dispatch_log_bytes": dict(self.dispatch_sink.bytes),
            "metrics": sorted(self.sink.metrics | self.dispatch_sink.metrics),
            "runs": {f"{p}|{s}": n for (p, s), n in self.runs.items()},
            "reasons": dict(self.reasons),
            "hour_runs_per_account": sorted(Counter(self.hour_runs[p.account_id] for p in self.stack.people).items()),
            "stored": sizes,
        }

    def close(self) -> None:
        self.stack.stop()
        self._mock.stop()
        self._env.close()

    # --- inside ----------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        stamp = datetime.fromtimestamp(self.stack.clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {"scheduled_time": stamp, "execution_id": f"scale-{stamp}"}
        with handler_output(self.dispatch_sink):
            self.dispatch_app.handler(event, LambdaContext("DispatchFunction", f"dispatch-{stamp}"))

    def _forget_moto_instances(self) -> None:
        """moto keeps every model object it ever made, for its dashboard: every item a Query copied and
        every message a receive copied, for the whole hour, unless told to forget them."""
        from moto.core.model_instances import reset_model_data

        reset_model_data()

    def _worker(self, container: int) -> Any:
        found = self.workers.get(container)
        if found is None:
            pool = self._make_pool(maxsize=40)  # what Worker makes for itself: 4 per parallel run
            original = pool.urlopen
            llu, ns = self.stack.llu.base_url, self.stack.ns.base_url

            def urlopen(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
                kind = "linkup" if url.startswith(llu) else "nightscout" if url.startswith(ns) else "other"
                counts = getattr(RUN, "counts", None)
                if counts is not None:
                    counts[kind] += 1
                return original(method, url, *args, **kwargs)

            pool.urlopen = urlopen  # type: ignore[method-assign]
            found = self.stack.new_worker(pool=pool)
            run_account = found.run_account

            def metered(account_id: str, due: int, interval: int = 0, **options: Any) -> Any:
                counts: Counter[str] = Counter()
                RUN.counts = counts
                status, reason = "error", "raised"
                try:
                    outcome = run_account(account_id, due, interval, **options)
                    status, reason = outcome.status, str(outcome.reason or "")
                    return outcome
                finally:
                    RUN.counts = None
                    with self._lock:
                        self._collected.append((account_id, status, counts))
                        if status != "ran":
                            self.reasons[f"{self.phase}|{status}: {reason}"] += 1

            setattr(found, "run_account", metered)  # noqa: B010 - this container's runs, metered
            self.workers[container] = found
        return found

    def _invoke(self, container: int, messages: list[dict[str, Any]]) -> dict[str, Any]:
        from aws_lambda_powertools.logging import logger as powertools_logger

        new = container not in self.workers
        self.worker_app.WORKER = self._worker(container)
        powertools_logger.is_cold_start = new
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
        self._collected = []
        context = LambdaContext("SyncWorkerFunction", f"{container}-{messages[0]['MessageId']}")
        with handler_output(self.sink):
            response = self.worker_app.handler({"Records": records}, context)
        retry = {failure["itemIdentifier"] for failure in response.get("batchItemFailures", [])}
        handled = [m for m in messages if m["MessageId"] not in retry]
        for start in range(0, len(handled), 10):
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(handled[start:][:10])]
            self.stack.sqs.delete_message_batch(QueueUrl=self.stack.queue_url, Entries=entries)
        runs = self._collected
        for account_id, status, counts in runs:
            self.runs[(self.phase, status)] += 1
            self.web[(self.phase, "linkup")] += counts["linkup"]
            self.web[(self.phase, "nightscout")] += counts["nightscout"]
            if self.phase == "hour" and status in ("ran", "skipped", "failed"):
                self.hour_runs[account_id] += 1
        return {"messages": len(messages), "retried": len(retry), "runs": [dict(c) for _, _, c in runs]}

    def _stored_sizes(self) -> dict[str, int]:
        """Bytes and items the state table holds at the end (DynamoDB's storage is billed by size)."""
        items = self.ddb_meter.table_items(self.stack.table)
        return {"bytes": sum(stored_item_size(item) for item in items), "items": len(items)}


def serve(connection: Any, config: ShardConfig) -> None:
    """A shard in a process of its own: method calls arrive as (name, args), answers go back."""
    try:
        shard = Shard(config)
        connection.send(("ok", shard.stack.clock()))
    except Exception:
        connection.send(("error", traceback.format_exc()))
        return
    try:
        while True:
            name, args = connection.recv()
            if name == "close":
                shard.close()
                connection.send(("ok", None))
                return
            try:
                connection.send(("ok", getattr(shard, name)(*args)))
            except Exception:
                connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()
