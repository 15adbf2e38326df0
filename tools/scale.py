"""`make scale`: the hosted stack with 10,000 accounts for one simulated hour, and what it costs a month.

    python -m tools.scale [--accounts 10000] [--minutes 60] [--shards N] [--json docs/results/scale.json]

Everything runs on this machine: moto in-process (DynamoDB, SQS, KMS), the LibreLink Up simulator and
one Nightscout site per account on 127.0.0.1, all on one virtual clock. The accounts are shared out
over `--shards` processes (default: one per CPU core), each a whole hosted stack
(tools/scale_shard.py) with its share; this process steps them one virtual second at a time and plays
Lambda: which container (warm, else new, up to MaximumConcurrency) each SQS batch goes to.

First a warm-up of one schedule interval (every account's first run: login, 12-hour back-fill), then
the measured `--minutes` in steady state. Measured: LibreLink Up requests per virtual second (its own
request log), DynamoDB units (tools/dynamodb_units.py), SQS SendMessageBatch and KMS Decrypt calls,
log bytes. Modelled, with the assumptions printed: invocation durations, Lambda's poller requests,
cold starts. Month = the measured hour x 730, free tier ignored, at tools/bench.py's list prices.

The figures go to docs/results/scale.json (kept in the repository), and the documentation's scale block
is rewritten from it (tools/docs_figures.py). The bill is recomputed from the measured units each time a
block is written, so a price change needs no new measurement (`make docs-figures`).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.bench import (
    LAMBDA_PLATFORM_LOG_BYTES,
    PRICE_ALARM_MONTH,
    PRICE_CUSTOM_METRIC_MONTH,
    PRICE_DDB_READ_UNIT,
    PRICE_DDB_STORED_GB_MONTH,
    PRICE_DDB_WRITE_UNIT,
    PRICE_KMS_REQUEST,
    PRICE_LAMBDA_GB_S_ARM,
    PRICE_LAMBDA_REQUEST,
    PRICE_LOGS_GB,
    PRICE_LOGS_STORED_GB_MONTH,
    PRICE_SCHEDULER_INVOCATION,
    RESULTS_FILE,
)
from tools.bench import personal_bill as bench_bill
from tools.dynamodb_units import read_units
from tools.local_stack import ROOT
from tools.scale_shard import Shard, ShardConfig, serve

# us-east-1 list prices (2026) that tools/bench.py has no use for; the free tier is ignored.
PRICE_SQS_REQUEST = 0.40 / 1_000_000  # standard queue, per 64 KB chunk
PRICE_KMS_KEY_MONTH = 1.00  # customer-managed key
HOURS_PER_MONTH = 730
GOAL_PER_ACCOUNT = 0.05
HOSTED_TEMPLATE = ROOT / "hosted.yaml"
SCALE_RESULTS_FILE = ROOT / "docs" / "results" / "scale.json"

# The model of a run's duration in AWS (the loopback here says nothing about the internet): each run
# makes its requests one after the other; the runs of a batch go side by side in threads, so an
# invocation lasts as long as its slowest run, plus the handler's own work.
LATENCY_MS = {"linkup": 300, "nightscout": 150, "dynamodb": 10, "kms": 10}
HANDLER_MS = 10
INIT_MS = 1000  # a new container: import and clients at 256 MB (billed since August 2025)
AWS_CALL_MS = 10  # the dispatcher's Query and SendMessageBatch calls
# Lambda's SQS poller: starts with 5 pollers long-polling 20 s each; only a second in which the queue
# had nothing visible gives them empty polls (5 per 20 s).
POLLERS = 5
LONG_POLL_S = 20
# hosted.yaml's defaults, when there is no hosted.yaml yet (the lead's plan of issue 14).
PLAN = {
    "memory_mb": 256,
    "dispatch_memory_mb": 256,
    "max_concurrency": 10,
    "batch_size": 10,
    "alarm_metrics": 5,
    "alarms": 3,
    "kms_keys": 1,
    "retention_days": 30,
    "schedule_per_minute": 1,
}


def stack_defaults(path: Path = HOSTED_TEMPLATE) -> dict[str, Any]:
    """What hosted.yaml deploys by default that the cost depends on (the plan's figures without it)."""
    found = dict(PLAN, source="the plan of issue 14 (no hosted.yaml)")
    if not path.exists():
        return found
    from tools.local_stack import read_template

    template = read_template(path)
    params = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    resources = template.get("Resources", {})
    alarms = [r for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Alarm"]
    metrics = sum(
        max(1, sum(1 for m in a.get("Properties", {}).get("Metrics", []) if "MetricStat" in m)) for a in alarms
    )
    dispatch = resources.get("DispatchFunction", {}).get("Properties", {})

    def number(name: str, default: int) -> int:
        value = params.get(name)
        return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else default

    found.update(
        memory_mb=number("MemorySize", PLAN["memory_mb"]),
        max_concurrency=number("MaximumConcurrency", PLAN["max_concurrency"]),
        batch_size=number("BatchSize", PLAN["batch_size"]),
        retention_days=number("LogRetentionDays", PLAN["retention_days"]),
        dispatch_memory_mb=int(dispatch.get("MemorySize", PLAN["dispatch_memory_mb"]))
        if str(dispatch.get("MemorySize", "")).isdigit()
        else PLAN["dispatch_memory_mb"],
        alarms=len(alarms),
        alarm_metrics=metrics,
        kms_keys=sum(1 for r in resources.values() if r.get("Type") == "AWS::KMS::Key"),
        source="hosted.yaml",
    )
    return found


# --- shards ------------------------------------------------------------------------------------------


class LocalShard:
    """A shard in this process (one shard: small runs and the test)."""

    def __init__(self, config: ShardConfig) -> None:
        self.shard = Shard(config)
        self._answer: Any = None

    def call(self, name: str, *args: Any) -> None:
        self._answer = getattr(self.shard, name)(*args)

    def result(self) -> Any:
        return self._answer

    def close(self) -> None:
        self.shard.close()


class ProcessShard:
    """A shard in a process of its own; call() sends, result() waits, so all shards work at once."""

    def __init__(self, config: ShardConfig) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, config), daemon=True)
        self.process.start()
        child.close()

    def call(self, name: str, *args: Any) -> None:
        self.connection.send((name, args))

    def result(self) -> Any:
        status, value = self.connection.recv()
        if status != "ok":
            raise RuntimeError(f"a scale shard failed:\n{value}")
        return value

    def close(self) -> None:
        try:
            self.call("close")
            self.result()
        finally:
            self.process.join(timeout=30)


# --- Lambda's containers ----------------------------------------------------------------------------


@dataclass
class Containers:
    """Which container each batch goes to: the warm one free longest, else a new one while fewer than
    MaximumConcurrency are busy, else the batch waits in the queue for the next second."""

    maximum: int
    busy_until: list[float] = field(default_factory=list)
    deferred: int = 0

    def allot(self, second: int, wanted: list[int]) -> list[list[tuple[int, bool]]]:
        free = sorted((until, c) for c, until in enumerate(self.busy_until) if until <= second)
        slots = self.maximum - (len(self.busy_until) - len(free))
        out: list[list[tuple[int, bool]]] = [[] for _ in wanted]
        left = list(wanted)
        shard = 0
        while slots > 0 and any(left):
            while not left[shard]:
                shard = (shard + 1) % len(left)
            if free:
                container, new = free.pop(0)[1], False
            else:
                container, new = len(self.busy_until), True
                self.busy_until.append(0.0)
            self.busy_until[container] = math.inf  # taken until its duration is known
            out[shard].append((container, new))
            left[shard] -= 1
            slots -= 1
            shard = (shard + 1) % len(left)
        self.deferred += sum(left)
        return out


def run_ms(counts: dict[str, int]) -> float:
    return sum(LATENCY_MS[kind] * counts.get(kind, 0) for kind in LATENCY_MS)


@dataclass
class Invocations:
    """The worker's invocations by phase: count, new containers, billed milliseconds."""

    count: Counter[str] = field(default_factory=Counter)
    cold: Counter[str] = field(default_factory=Counter)
    billed_ms: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    batches_per_second: Counter[int] = field(default_factory=Counter)


# --- the run --------------------------------------------------------------------------------------------


@dataclass
class ScaleOptions:
    accounts: int = 10_000
    minutes: int = 60
    shards: int = 0  # 0: one per CPU core (one when there are few accounts)
    interval: int = 5
    progress: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr, flush=True))


def run_scale(options: ScaleOptions) -> dict[str, Any]:
    began = time.perf_counter()
    defaults = stack_defaults()
    shards = options.shards or (1 if options.accounts < 500 else max(1, min(os.cpu_count() or 1, 8)))
    warmup_s, hour_s = options.interval * 60, options.minutes * 60
    configs = [
        ShardConfig(
            index=i,
            shards=shards,
            accounts=options.accounts,
            batch_size=defaults["batch_size"],
            warmup_s=warmup_s,
            hour_s=hour_s,
        )
        for i in range(shards)
    ]
    options.progress(f"adding {options.accounts:,} accounts in {shards} shard(s) ...")
    stack: list[LocalShard | ProcessShard] = (
        [LocalShard(configs[0])] if shards == 1 else [ProcessShard(config) for config in configs]
    )
    try:
        if shards > 1:
            for shard in stack:
                shard.result()  # each has added its accounts
        setup_s = time.perf_counter() - began
        containers = Containers(defaults["max_concurrency"])
        calls = Invocations()
        idle_seconds = Counter[str]()
        for second in range(warmup_s + hour_s):
            phase = "warmup" if second < warmup_s else "hour"
            if second % 300 == 0:
                options.progress(
                    f"  virtual minute {second // 60} of {(warmup_s + hour_s) // 60} "
                    f"({time.perf_counter() - began:,.0f} s)"
                )
            for shard in stack:
                shard.call("ready", second, defaults["max_concurrency"])
            wanted = [int(shard.result()) for shard in stack]
            if not any(wanted):
                idle_seconds[phase] += 1
                continue
            allotted = containers.allot(second, wanted)
            for shard, mine in zip(stack, allotted, strict=True):
                shard.call("deliver", mine)
            for shard, mine in zip(stack, allotted, strict=True):
                for (container, new), done in zip(mine, shard.result(), strict=True):
                    ms = max((run_ms(r) for r in done["runs"]), default=0.0) + HANDLER_MS + (INIT_MS if new else 0)
                    containers.busy_until[container] = second + ms / 1000
                    calls.count[phase] += 1
                    calls.cold[phase] += int(new)
                    calls.billed_ms[phase] += math.ceil(ms)
                    calls.messages[phase] += done["messages"]
                    calls.batches_per_second[second] += 1
        drive_s = time.perf_counter() - began - setup_s
        options.progress("collecting the measurements ...")
        for shard in stack:
            shard.call("finish")
        parts = [shard.result() for shard in stack]
    finally:
        for shard in stack:
            shard.close()
    results = summarize(parts, calls, containers, idle_seconds, defaults, options, shards, warmup_s, hour_s)
    results["seconds"] = {"setup": setup_s, "drive": drive_s, "total": time.perf_counter() - began}
    return results


# --- the figures ------------------------------------------------------------------------------------------


def merge(parts: list[dict[str, Any]], key: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part[key])
    return total


def rate(per_second: dict[int, int], start: int, seconds: int) -> dict[str, float]:
    counts = [per_second.get(s, 0) for s in range(start, start + seconds)]
    mean = sum(counts) / seconds if seconds else 0.0
    peak = max(counts, default=0)
    return {"mean": mean, "peak": float(peak), "peak_to_mean": peak / mean if mean else 0.0}


def summarize(
    parts: list[dict[str, Any]],
    calls: Invocations,
    containers: Containers,
    idle_seconds: Counter[str],
    defaults: dict[str, Any],
    options: ScaleOptions,
    shards: int,
    warmup_s: int,
    hour_s: int,
) -> dict[str, Any]:
    per_second: Counter[int] = Counter()
    for part in parts:
        per_second.update({int(s): n for s, n in part["llu_per_second"].items()})
    ddb: dict[str, list[float]] = {}
    for part in parts:
        for key, (n, rru, wru) in part["dynamodb"].items():
            phase, name = key.split("|", 1)
            if name.startswith("dispatcher"):
                continue  # from the due-list reads below: one Query per partition and minute, as in one stack
            found = ddb.setdefault(f"{phase}|{name}", [0, 0.0, 0.0])
            found[0] += n
            found[1] += rru
            found[2] += wru
    due: Counter[str] = Counter()
    for part in parts:
        due.update(part["due_reads"])
    for slot, size in due.items():
        minute = int(slot.split("|", 1)[0])
        phase = "warmup" if minute * 60 - int(parts[0]["start_minute"]) * 60 < warmup_s else "hour"
        found = ddb.setdefault(f"{phase}|dispatcher: due lists (Query)", [0, 0.0, 0.0])
        found[0] += 1
        found[1] += read_units(size, consistent=False)
    sqs, kms = merge(parts, "sqs"), merge(parts, "kms")
    runs = merge(parts, "runs")
    per_account: Counter[int] = Counter()
    for part in parts:
        per_account.update({int(k): v for k, v in part["hour_runs_per_account"]})
    reasons = merge(parts, "reasons")
    hour = {
        "runs": {k.split("|", 1)[1]: v for k, v in runs.items() if k.startswith("hour|")},
        "not_ran": {k.split("|", 1)[1]: v for k, v in reasons.items() if k.startswith("hour|")},
        "runs_per_account": dict(sorted(per_account.items())),
        "linkup_rate": rate(per_second, warmup_s, hour_s),
        "linkup_per_second": [per_second.get(s, 0) for s in range(warmup_s, warmup_s + hour_s)],
        "linkup_requests": merge(parts, "llu_requests").get("hour", 0),
        "logins": merge(parts, "logins").get("hour", 0),
        "nightscout_requests": merge(parts, "web").get("hour|nightscout", 0),
        "invocations": calls.count["hour"],
        "cold_starts": calls.cold["hour"],
        "messages": calls.messages["hour"],
        "billed_ms": calls.billed_ms["hour"],
        "gb_s": calls.billed_ms["hour"] / 1000 * defaults["memory_mb"] / 1024,
        "send_message_batch": sqs.get("hour|SendMessageBatch", 0),
        "kms_decrypt": kms.get("hour|Decrypt", 0),
        "log_bytes": merge(parts, "log_bytes").get("hour", 0),
        "dispatch_log_bytes": merge(parts, "dispatch_log_bytes").get("hour", 0),
        "idle_seconds": idle_seconds["hour"],
    }
    hour["poller"] = {
        "receive": hour["invocations"],
        "delete_batch": hour["invocations"],
        "empty_polls": hour["idle_seconds"] * POLLERS / LONG_POLL_S,
    }
    warmup = {
        "runs": {k.split("|", 1)[1]: v for k, v in runs.items() if k.startswith("warmup|")},
        "not_ran": {k.split("|", 1)[1]: v for k, v in reasons.items() if k.startswith("warmup|")},
        "linkup_requests": merge(parts, "llu_requests").get("warmup", 0),
        "logins": merge(parts, "logins").get("warmup", 0),
        "invocations": calls.count["warmup"],
        "cold_starts": calls.cold["warmup"],
        "kms_decrypt": kms.get("warmup|Decrypt", 0),
        "setup_kms_encrypt": kms.get("setup|Encrypt", 0),
    }
    dynamodb = {
        phase: {
            key.split("|", 1)[1]: {"calls": int(v[0]), "read_units": v[1], "write_units": v[2]}
            for key, v in sorted(ddb.items())
            if key.startswith(phase + "|")
        }
        for phase in ("setup", "warmup", "hour")
    }
    stored = {"bytes": sum(p["stored"]["bytes"] for p in parts), "items": sum(p["stored"]["items"] for p in parts)}
    metrics = sorted({m for p in parts for m in p["metrics"]})
    results: dict[str, Any] = {
        "accounts": options.accounts,
        "shards": shards,
        "interval_minutes": options.interval,
        "minutes": options.minutes,
        "defaults": defaults,
        "assumptions": {
            "latency_ms": LATENCY_MS,
            "handler_ms": HANDLER_MS,
            "init_ms": INIT_MS,
            "aws_call_ms": AWS_CALL_MS,
            "pollers": POLLERS,
            "long_poll_s": LONG_POLL_S,
            "platform_log_bytes": LAMBDA_PLATFORM_LOG_BYTES,
        },
        "warmup": warmup,
        "hour": hour,
        "dynamodb": dynamodb,
        "stored": stored,
        "metrics": metrics,
        "containers": len(containers.busy_until),
        "deferred_batches": containers.deferred,
    }
    results["cost"] = monthly_cost(results)
    results["personal"] = personal_bill()
    return results


def monthly_cost(results: dict[str, Any]) -> dict[str, Any]:
    """USD a month per item, for all accounts: the measured hour x 730, and the stack's fixed costs."""
    hour, defaults, accounts = results["hour"], results["defaults"], results["accounts"]
    month = HOURS_PER_MONTH
    ddb_hour = results["dynamodb"]["hour"]
    rru = sum(v["read_units"] for v in ddb_hour.values())
    wru = sum(v["write_units"] for v in ddb_hour.values())
    logged = (hour["log_bytes"] + hour["invocations"] * LAMBDA_PLATFORM_LOG_BYTES) * month / 2**30
    dispatches = 60 * defaults["schedule_per_minute"]
    dispatch_logged = hour["dispatch_log_bytes"] / max(1, results["shards"]) + dispatches * LAMBDA_PLATFORM_LOG_BYTES
    dispatch_logged *= month / 2**30
    # The dispatcher: one Query per interval, then the sends, eight at a time (dispatch.SEND_THREADS).
    sends_per_dispatch = hour["send_message_batch"] / dispatches
    dispatch_ms = 12 * AWS_CALL_MS + math.ceil(sends_per_dispatch / 8) * AWS_CALL_MS
    poller = hour["poller"]
    sqs_requests = hour["send_message_batch"] + poller["receive"] + poller["delete_batch"] + poller["empty_polls"]
    variable = {
        "worker_requests": hour["invocations"] * month * PRICE_LAMBDA_REQUEST,
        "worker_compute": hour["gb_s"] * month * PRICE_LAMBDA_GB_S_ARM,
        "dynamodb_reads": rru * month * PRICE_DDB_READ_UNIT,
        "dynamodb_writes": wru * month * PRICE_DDB_WRITE_UNIT,
        "dynamodb_storage": results["stored"]["bytes"] / 2**30 * PRICE_DDB_STORED_GB_MONTH,
        "sqs": sqs_requests * month * PRICE_SQS_REQUEST,
        "kms_decrypt": hour["kms_decrypt"] * month * PRICE_KMS_REQUEST,
        "logs_ingestion": logged * PRICE_LOGS_GB,
        "logs_storage": logged * defaults["retention_days"] / 30 * PRICE_LOGS_STORED_GB_MONTH,
    }
    fixed = {
        "kms_key": defaults["kms_keys"] * PRICE_KMS_KEY_MONTH,
        "alarms": defaults["alarm_metrics"] * PRICE_ALARM_MONTH,
        "custom_metrics": len(results["metrics"]) * PRICE_CUSTOM_METRIC_MONTH,
        "scheduler": dispatches * month * PRICE_SCHEDULER_INVOCATION,
        "dispatcher_lambda": dispatches * month * PRICE_LAMBDA_REQUEST
        + dispatches
        * month
        * math.ceil(dispatch_ms)
        / 1000
        * defaults["dispatch_memory_mb"]
        / 1024
        * PRICE_LAMBDA_GB_S_ARM,
        "dispatcher_logs": dispatch_logged
        * (PRICE_LOGS_GB + defaults["retention_days"] / 30 * PRICE_LOGS_STORED_GB_MONTH),
        "sns_topic": 0.0,
    }
    total = sum(variable.values()) + sum(fixed.values())
    return {
        "variable": variable,
        "fixed": fixed,
        "total": total,
        "per_account": total / accounts,
        "fixed_per_account": sum(fixed.values()) / accounts,
        "goal_met": total / accounts <= GOAL_PER_ACCOUNT,
        "basis": {
            "read_units_hour": rru,
            "write_units_hour": wru,
            "sqs_requests_hour": sqs_requests,
            "logged_gb_month": logged,
            "dispatch_ms": dispatch_ms,
        },
    }


def personal_bill(bench_file: Path = RESULTS_FILE) -> dict[str, Any]:
    """The personal stack's monthly bill at the 5-minute schedule, from the kept `make bench` results at
    today's prices (never from the documentation's text)."""
    try:
        bench = json.loads(bench_file.read_text())
        total = bench_bill(bench)["cost"]["5 minutes"]["total"]
    except (OSError, ValueError, KeyError, TypeError):
        return {"usd": None, "source": f"no {bench_file.name}: run make bench"}
    shown = bench_file.relative_to(ROOT) if bench_file.is_relative_to(ROOT) else bench_file
    return {"usd": float(total), "source": f"make bench, {shown}"}


def main(argv: list[str] | None = None) -> int:
    from tools.scale_report import report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=60, help="measured minutes after the warm-up")
    parser.add_argument("--shards", type=int, default=0, help="processes (default: one per CPU core)")
    parser.add_argument("--json", type=Path, default=SCALE_RESULTS_FILE, help="write every figure to this file")
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite the documentation's blocks (e.g. with another --json)"
    )
    args = parser.parse_args(argv)
    results = run_scale(ScaleOptions(accounts=args.accounts, minutes=args.minutes, shards=args.shards))
    print(report(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if not args.no_docs:
        from tools.docs_figures import rewrite_docs

        rewrite_docs()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
