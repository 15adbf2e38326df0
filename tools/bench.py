"""`make bench`: cold start, warm run, requests per run, logins, memory, package size and a cost estimate.

    python -m tools.bench [--cold-starts 5] [--warm-runs 50] [--days 200] [--output docs/results/bench.json]

Everything runs against the LibreLink Up simulator, the Nightscout stand-in and a moto server on
127.0.0.1 (no AWS account, no credentials). Writes every raw number to docs/results/bench.json (kept in
the repository), prints the Markdown report and rewrites the blocks of the documentation that come from
it (tools/docs_figures.py: performance, the personal bill). The bill is computed from the measured
units at the price constants below each time a block is written, so a price change needs no new
measurement (`make docs-figures`). Not part of CI.

Cold starts and warm runs are timed in fresh `python -c` processes that hold nothing but the handler:
the simulators and moto run in this process, so their CPU time does not count against the function.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.bench_import import measure_import
from tools.local_stack import (
    EMAIL,
    ROOT,
    ByteCounter,
    LocalStack,
    aws_environment,
    function_memory_mb,
    local_aws_variables,
    moto_server,
)

DAY_S = 86_400
RESULTS_FILE = ROOT / "docs" / "results" / "bench.json"
PACKAGE_DIRS = {"function": ROOT / "functions" / "sync", "layer": ROOT / "layers" / "linkup_sync"}

# us-east-1 list prices (checked December 2026); the free tier is ignored throughout.
PRICE_LAMBDA_GB_S_ARM = 0.0000133334
PRICE_LAMBDA_REQUEST = 0.20 / 1_000_000
# DynamoDB on demand since 1 November 2024 (halved from $1.25 / $0.25 per million).
PRICE_DDB_WRITE_UNIT = 0.625 / 1_000_000
PRICE_DDB_READ_UNIT = 0.125 / 1_000_000
PRICE_SECRET_MONTH = 0.40
PRICE_SECRET_CALL = 0.05 / 10_000
PRICE_LOGS_GB = 0.50  # ingestion
PRICE_LOGS_STORED_GB_MONTH = 0.03
PRICE_CUSTOM_METRIC_MONTH = 0.30
PRICE_ALARM_MONTH = 0.10  # standard resolution (period >= 60 s)
PRICE_DASHBOARD_MONTH = 3.00
PRICE_SCHEDULER_INVOCATION = 1.00 / 1_000_000
PRICE_SNS_PUBLISH = 0.50 / 1_000_000
PRICE_SNS_EMAIL = 2.00 / 100_000
PRICE_KMS_REQUEST = 0.03 / 10_000  # Secrets Manager decrypts the secret with its KMS key: one per read
PRICE_DDB_STORED_GB_MONTH = 0.25 + 0.20  # storage + point-in-time recovery
# Lambda's own log lines per invocation (platform.start and platform.report in JSON), not in the handler's
# output that the bench captures; measured from CloudWatch samples of similar functions, rounded up.
LAMBDA_PLATFORM_LOG_BYTES = 700
# Alert e-mails a month, an upper bound: a handful of incidents, each with its all-clear and reminders.
EMAILS_PER_MONTH = 30
SECRET_MAX_AGE_S = 3600  # linkup_sync.secrets: a warm container reads the secret at most hourly
RUNS_PER_MONTH = {"5 minutes": 30 * 24 * 12, "1 minute": 30 * 24 * 60}
SCHEDULE_S = {"5 minutes": 300, "1 minute": 60}

# nightscout-librelink-up (a long-running Node process), from its behaviour: every run asks LibreLink Up
# for the connections and for the graph, reads the last Nightscout entry and uploads; it logs in again
# whenever its process or container restarts.
NLU_PER_RUN = {"linkup": 2, "nightscout": 2, "aws": 0}

# The measuring child: a fresh interpreter that imports the handler module the way Lambda does and
# answers one JSON line per invocation; stdin gives it the virtual time of each run. The handler's
# JSON logs and EMF metrics go to a byte counter instead of stdout.
CHILD = r"""
import time
T0 = time.perf_counter()
import json, os, resource, sys
root, runs, traced = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path[:0] = [os.path.join(root, "functions", "sync"), os.path.join(root, "layers", "linkup_sync", "python")]

class Counter:
    def __init__(self):
        self.bytes = 0
    def write(self, text):
        self.bytes += len(text.encode("utf-8"))
        return len(text)
    def flush(self):
        pass
    def isatty(self):
        return False

reply, sink = sys.stdout, Counter()
sys.stdout = sink
now = [float(sys.stdin.readline())]
T1, P1 = time.perf_counter(), time.process_time()
import app
T2 = time.perf_counter()
from linkup_sync.runtime import Dependencies

class Context:
    function_name = "SyncFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:SyncFunction"
    aws_request_id = "bench"
    def get_remaining_time_in_millis(self):
        return 30_000

calls = []
def count(model=None, **_):
    calls.append(model.name if model is not None else "?")

def peak_rss_kb():
    # VmHWM: peak RSS of this address space. ru_maxrss survives execve, so a child started by a big
    # parent would report the parent's size.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

for i in range(runs):
    if i:
        now[0] = float(sys.stdin.readline())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now[0]))
    event = {"scheduled_time": stamp, "execution_id": f"bench-{i}", "attempt": "1",
             "schedule_arn": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/bench"}
    if i == traced:
        import tracemalloc
        tracemalloc.start()
    b0, c0 = sink.bytes, len(calls)
    w0, p0 = time.perf_counter(), time.process_time()
    if app.DEPENDENCIES is None:
        # what app.dependencies() does on the first invocation, with the virtual clock; the two boto3
        # clients are created here (the handler would create them during its first run)
        deps = Dependencies.from_env(os.environ, clock=lambda: now[0])
        deps.store.client.meta.events.register("before-call", count)
        deps.credentials.provider.client.meta.events.register("before-call", count)
        app.DEPENDENCIES = deps
    w_deps = time.perf_counter()
    result = app.handler(event, Context())
    w1, p1 = time.perf_counter(), time.process_time()
    record = {"i": i, "wall_s": w1 - w0, "cpu_s": p1 - p0, "aws_calls": calls[c0:], "log_bytes": sink.bytes - b0,
              "result": result, "peak_rss_kb": peak_rss_kb(),
              "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    if i == traced:
        record["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if i == 0:
        record.update(startup_s=T1 - T0, import_s=T2 - T1, clients_s=w_deps - w0, handler_s=w1 - w_deps,
                      init_s=w1 - T1, init_cpu_s=p1 - P1)
    print(json.dumps(record), file=reply, flush=True)
"""


@dataclass
class ChildResult:
    records: list[dict[str, Any]]
    spawn_to_first_result_s: float
    stderr: str = ""


def run_child(
    stack: LocalStack,
    *,
    runs: int,
    traced: int = -1,
    importtime: bool = False,
    step_s: int = 300,
    timeout_s: float = 120,
) -> ChildResult:
    """Start a fresh interpreter running CHILD and drive `runs` invocations, `step_s` virtual seconds apart."""
    env = {**os.environ, **stack.env, **local_aws_variables(stack.moto_endpoint), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        sys.executable,
        *(["-X", "importtime"] if importtime else []),
        "-c",
        CHILD,
        str(ROOT),
        str(runs),
        str(traced),
    ]
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
        )
        watchdog = threading.Timer(timeout_s, proc.kill)
        watchdog.start()
        first = 0.0
        try:
            assert proc.stdin is not None and proc.stdout is not None
            for i in range(runs):
                stack.tick(step_s)
                llu0, ns0 = len(stack.llu.requests), stack.ns.count()
                proc.stdin.write(f"{stack.clock()!r}\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                if i == 0:
                    first = time.perf_counter() - started
                if not line:
                    proc.wait()
                    err.seek(0)
                    raise RuntimeError(f"the measuring process failed (exit {proc.returncode}):\n{err.read()[-4000:]}")
                record: dict[str, Any] = json.loads(line)
                record["linkup_requests"] = len(stack.llu.requests) - llu0
                record["nightscout_requests"] = stack.ns.count() - ns0
                records.append(record)
            proc.stdin.close()
            proc.wait(timeout=30)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read()
    return ChildResult(records, first, stderr)


# --- measurements ----------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def measure_cold_starts(stack: LocalStack, count: int = 5) -> dict[str, Any]:
    """`count` fresh processes, each: import app, then one invocation (the ticket is already in DynamoDB)."""
    samples = [run_child(stack, runs=1) for _ in range(count)]
    first = [s.records[0] for s in samples]
    return {
        "samples": count,
        "import_app_s": median(r["import_s"] for r in first),
        "import_to_first_result_s": median(r["init_s"] for r in first),
        "import_to_first_result_cpu_s": median(r["init_cpu_s"] for r in first),
        "process_spawn_to_first_result_s": median(s.spawn_to_first_result_s for s in samples),
        "interpreter_startup_s": median(r["startup_s"] for r in first),
        "boto3_clients_s": median(r["clients_s"] for r in first),
        "first_invocation_s": median(r["handler_s"] for r in first),
        "peak_rss_mb": median(r["peak_rss_kb"] for r in first) / 1024,
        "log_bytes": median(r["log_bytes"] for r in first),
        "aws_calls": first[0]["aws_calls"],
        "linkup_requests": first[0]["linkup_requests"],
        "nightscout_requests": first[0]["nightscout_requests"],
        "all": [
            {**r, "spawn_to_first_result_s": s.spawn_to_first_result_s} for r, s in zip(first, samples, strict=True)
        ],
    }


def parse_importtime(stderr: str, top: int = 10) -> dict[str, Any]:
    """`python -X importtime` output -> self time summed per top-level package, largest first."""
    per_package: dict[str, int] = {}
    modules = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3:
            continue
        try:
            self_us = int(parts[0])
        except ValueError:
            continue
        package = parts[2].strip().split(".")[0]
        per_package[package] = per_package.get(package, 0) + self_us
        modules += 1
    total = sum(per_package.values())
    ranked = sorted(per_package.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return {
        "modules": modules,
        "total_ms": total / 1000,
        "top": [{"package": name, "ms": us / 1000, "share": us / total if total else 0.0} for name, us in ranked],
    }


def measure_importtime(stack: LocalStack, top: int = 10) -> dict[str, Any]:
    """Every import of a cold start (`import app` and the lazy imports of the first invocation)."""
    return parse_importtime(run_child(stack, runs=1, importtime=True).stderr, top)


def measure_warm(stack: LocalStack, runs: int = 50, memory_after: int = 10) -> dict[str, Any]:
    """One fresh process: a cold invocation, `runs` warm ones, then one more under tracemalloc."""
    total = 1 + runs + 1
    child = run_child(stack, runs=total, traced=total - 1)
    warm = child.records[1 : 1 + runs]
    return {
        "runs": runs,
        "wall_s": median(r["wall_s"] for r in warm),
        "cpu_s": median(r["cpu_s"] for r in warm),
        "wall_s_p90": sorted(r["wall_s"] for r in warm)[max(0, math.ceil(0.9 * len(warm)) - 1)],
        "log_bytes": median(r["log_bytes"] for r in warm),
        "aws_calls": warm[-1]["aws_calls"],
        "linkup_requests": max(r["linkup_requests"] for r in warm),
        "nightscout_requests": max(r["nightscout_requests"] for r in warm),
        "uploaded": [r["result"]["uploaded"] for r in warm],
        "peak_rss_mb_after_init_and_runs": child.records[min(memory_after, len(child.records) - 1)]["peak_rss_kb"]
        / 1024,
        "ru_maxrss_mb_after_init_and_runs": child.records[min(memory_after, len(child.records) - 1)]["ru_maxrss_kb"]
        / 1024,
        "runs_before_peak_rss": min(memory_after, len(child.records) - 1),
        "tracemalloc_peak_bytes": child.records[-1]["tracemalloc_peak_bytes"],
    }


def _one_run(stack: LocalStack) -> dict[str, Any]:
    stack.tick(300)
    llu0, ns0, aws0 = len(stack.llu.requests), stack.ns.count(), len(stack.aws_calls.calls)
    result = stack.run()
    return {
        "linkup": len(stack.llu.requests) - llu0,
        "nightscout": stack.ns.count() - ns0,
        "aws": len(stack.aws_calls.calls) - aws0,
        "aws_calls": stack.aws_calls.calls[aws0:],
        "uploaded": result["uploaded"],
    }


def measure_requests(stack: LocalStack, warm_runs: int = 3) -> dict[str, Any]:
    """Requests of a steady-state run in a new container and in a warm one (in this process).

    The stack must be provisioned and past its first run (logged in, history back-filled).
    """
    stack.new_container()
    new_container = _one_run(stack)
    warm = [_one_run(stack) for _ in range(warm_runs)]
    return {
        "new_container": new_container,
        "warm": {key: max(w[key] for w in warm) for key in ("linkup", "nightscout", "aws", "uploaded")}
        | {"aws_calls": warm[-1]["aws_calls"]},
    }


def measure_logins(moto_endpoint: str, *, days: int = 200, step_h: float = 6, month_days: int = 30) -> dict[str, Any]:
    """Drive `days` simulated days with a run every `step_h` hours; when did the bridge log in?"""
    from linkup_sync.errors import LinkupSyncError

    sink = ByteCounter()
    with LocalStack(moto_endpoint, log_sink=sink) as stack:
        stack.llu.add_patient(EMAIL)
        stack.provision(name=f"linkup-sync-logins-{os.getpid()}")
        start = stack.clock()
        runs = int(days * 24 / step_h)
        failed = 0
        for _ in range(runs):
            # The bridge never reads Nightscout back: emptying the stand-in keeps a long drive fast.
            stack.ns.clear_entries()
            try:
                stack.run()
            except LinkupSyncError:  # counted and reported
                failed += 1
            stack.tick(step_h * 3600)
        login_days = [
            round((r.time - start) / DAY_S, 2)
            for r in stack.llu.requests
            if r.path.endswith("/llu/auth/login") and r.method == "POST"
        ]
    return {
        "days": days,
        "step_hours": step_h,
        "runs": runs,
        "failed_runs": failed,
        "login_days": login_days,
        "logins_total": len(login_days),
        f"logins_first_{month_days}_days": sum(1 for d in login_days if d < month_days),
        "logins_per_30_days_average": len(login_days) / days * 30,
    }


def package_sizes(dirs: dict[str, Path] | None = None) -> dict[str, dict[str, int]]:
    """Bytes of a DEFLATE zip of each folder (without __pycache__ and *.egg-info), as `sam deploy` uploads it."""
    sizes: dict[str, dict[str, int]] = {}
    for name, folder in (dirs or PACKAGE_DIRS).items():
        buffer = io.BytesIO()
        files = 0
        raw = 0
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                relative = path.relative_to(folder)
                if not path.is_file() or any(p == "__pycache__" or p.endswith(".egg-info") for p in relative.parts):
                    continue
                if path.suffix == ".pyc":
                    continue
                archive.write(path, relative.as_posix())
                files += 1
                raw += path.stat().st_size
        sizes[name] = {"zip_bytes": len(buffer.getvalue()), "files": files, "raw_bytes": raw}
    return sizes


def dynamodb_item_size(item: dict[str, Any]) -> int:
    """Approximate DynamoDB item size (the unit that request units are billed on)."""

    def value_size(value: dict[str, Any]) -> int:
        ((kind, v),) = value.items()
        if kind == "S":
            return len(str(v).encode("utf-8"))
        if kind == "N":
            digits = str(v).lstrip("-").replace(".", "").strip("0") or "0"
            return (len(digits) + 1) // 2 + 1
        if kind == "B":
            return len(v)
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "L":
            return 3 + sum(1 + value_size(x) for x in v)
        if kind == "M":
            return 3 + sum(1 + len(k.encode()) + value_size(x) for k, x in v.items())
        if kind in ("SS", "NS", "BS"):
            return sum(value_size({kind[0]: x}) for x in v)
        return 0

    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def measure_state(stack: LocalStack) -> dict[str, Any]:
    items = stack.state_items()
    sizes = {item["sk"]["S"].split("#")[0]: dynamodb_item_size(item) for item in items}
    target = max((size for key, size in sizes.items() if key == "target"), default=0)
    total = sum(sizes.values())
    return {
        "item_bytes": sizes,
        # Query (strongly consistent) reads the account's items: 1 RRU per 4 KB of all returned items
        "query_read_units": max(1, math.ceil(total / 4096)),
        # UpdateItem of the target item: 1 WRU per 1 KB of the item
        "update_write_units": max(1, math.ceil(target / 1024)),
    }


def measure_steady_state(moto_endpoint: str, *, interval_s: int, hours: float = 13.5) -> dict[str, Any]:
    """Item sizes and request units once the upload ledger is full (it keeps 13 hours of instants)."""
    with LocalStack(moto_endpoint, log_sink=ByteCounter()) as stack:
        stack.llu.add_patient(EMAIL)
        stack.provision(name=f"linkup-sync-steady-{interval_s}-{os.getpid()}")
        runs = int(hours * 3600 / interval_s)
        for _ in range(runs):
            stack.ns.clear_entries()  # the bridge never reads Nightscout back: keeps the drive fast
            stack.run()
            stack.tick(interval_s)
        return {
            "interval_s": interval_s,
            "runs": runs,
            "ledger_entries": len(stack.stored_ledger()),
            **measure_state(stack),
        }


def emf_metrics(log_text: str) -> list[str]:
    """Distinct CloudWatch metrics (name and dimension names) in the EMF blobs of captured handler output."""
    found: set[str] = set()
    for line in log_text.splitlines():
        if '"_aws"' not in line:
            continue
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
            for dims in directive.get("Dimensions", [[]]):
                for metric in directive.get("Metrics", []):
                    found.add(f"{metric['Name']}[{','.join(dims)}]")
    return sorted(found)


def monthly_cost(
    *,
    runs: int,
    billed_ms: int,
    memory_mb: int,
    read_units: float,
    write_units: float,
    secret_calls: float,
    log_bytes: float,
    custom_metrics: int,
    alarms: int = 0,
    dashboards: int = 0,
    retention_days: int = 30,
    stored_bytes: int = 0,
    emails: int = EMAILS_PER_MONTH,
) -> dict[str, float]:
    """Monthly USD per item for `runs` invocations (the free tier ignored). `secret_calls` is per run."""
    logged = runs * (log_bytes + LAMBDA_PLATFORM_LOG_BYTES) / 2**30
    reads = runs * secret_calls
    cost = {
        "lambda_compute": runs * billed_ms / 1000 * memory_mb / 1024 * PRICE_LAMBDA_GB_S_ARM,
        "lambda_requests": runs * PRICE_LAMBDA_REQUEST,
        "dynamodb": runs * (read_units * PRICE_DDB_READ_UNIT + write_units * PRICE_DDB_WRITE_UNIT)
        + stored_bytes / 2**30 * PRICE_DDB_STORED_GB_MONTH,
        "secrets_manager": PRICE_SECRET_MONTH + reads * PRICE_SECRET_CALL,
        "kms": reads * PRICE_KMS_REQUEST,
        "cloudwatch_logs_ingestion": logged * PRICE_LOGS_GB,
        # steady state: `retention_days` of logs are kept
        "cloudwatch_logs_storage": logged * retention_days / 30 * PRICE_LOGS_STORED_GB_MONTH,
        "cloudwatch_metrics": custom_metrics * PRICE_CUSTOM_METRIC_MONTH,
        "cloudwatch_alarms": alarms * PRICE_ALARM_MONTH,
        "cloudwatch_dashboards": dashboards * PRICE_DASHBOARD_MONTH,
        "sns": emails * (PRICE_SNS_PUBLISH + PRICE_SNS_EMAIL),
        "scheduler": runs * PRICE_SCHEDULER_INVOCATION,
    }
    cost["total"] = sum(cost.values())
    return cost


def template_billing() -> dict[str, Any]:
    """What template.yaml deploys with its default parameters that is billed per month."""
    from tools.local_stack import read_template

    template = read_template()
    defaults = {name: spec.get("Default") for name, spec in template["Parameters"].items()}

    def holds(name: str | None) -> bool:
        if name is None:
            return True
        node = template["Conditions"][name]
        negate = "Fn::Not" in node
        if negate:
            node = node["Fn::Not"][0]
        left, right = node["Fn::Equals"]
        value = defaults.get(left["Ref"]) if isinstance(left, dict) else left
        return (str(value) == str(right)) != negate

    counts = {"alarms": 0, "dashboards": 0}
    for resource in template["Resources"].values():
        if not holds(resource.get("Condition")):
            continue
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            counts["alarms"] += 1
        elif resource["Type"] == "AWS::CloudWatch::Dashboard":
            counts["dashboards"] += 1
    counts["retention_days"] = int(defaults["LogRetentionDays"])
    return counts


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def personal_bill(results: dict[str, Any]) -> dict[str, Any]:
    """The basis and the monthly bill per schedule, from the measured figures at today's price constants.

    Computed whenever a report is written, never stored: a price change re-renders without measuring."""
    billing = results.get("billing") or template_billing()
    basis = {
        "billed_ms": max(1, math.ceil(results["warm"]["wall_s"] * 1000)),
        "memory_mb": results["memory_mb"],
        "secret_calls_per_hour": 1,  # the cache's max age; every new container reads it once too
        "log_bytes": results["warm"]["log_bytes"],
        "custom_metrics": len(results["custom_metrics_seen"]),
        "custom_metric_names": sorted({m.split("[")[0] for m in results["custom_metrics_seen"]}),
        **billing,
    }
    cost = {
        label: monthly_cost(
            runs=runs,
            billed_ms=basis["billed_ms"],
            memory_mb=basis["memory_mb"],
            read_units=results["steady_state"][label]["query_read_units"],
            write_units=results["steady_state"][label]["update_write_units"],
            secret_calls=min(1.0, SCHEDULE_S[label] / SECRET_MAX_AGE_S),
            log_bytes=basis["log_bytes"],
            custom_metrics=basis["custom_metrics"],
            alarms=basis["alarms"],
            dashboards=basis["dashboards"],
            retention_days=basis["retention_days"],
            stored_bytes=sum(results["steady_state"][label]["item_bytes"].values()),
        )
        for label, runs in RUNS_PER_MONTH.items()
    }
    return {"basis": basis, "cost": cost}


# --- the report ------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 else ("< $0.01" if value > 0 else "$0")


def markdown(results: dict[str, Any]) -> str:
    """The whole report `make bench` prints: the performance table, then the monthly bill."""
    return performance_markdown(results) + "\n\n" + cost_markdown(results)


def performance_markdown(results: dict[str, Any]) -> str:
    m, cold, warm, req = results["machine"], results["cold_start"], results["warm"], results["requests"]
    logins, sizes, imports, state = results["logins"], results["package"], results["importtime"], results["state"]
    aws_warm = " + ".join(req["warm"]["aws_calls"])
    aws_new = " + ".join(req["new_container"]["aws_calls"])
    lines = [
        f"Measured on {m['platform']}, {m['cpu']}, {m['cores']} cores, Python {m['python']}; "
        "LibreLink Up simulator, Nightscout stand-in and moto on 127.0.0.1 (`make bench`).",
        "",
        "| Measure | linkup-sync | nightscout-librelink-up |",
        "|---|---|---|",
        f"| Cold start: `import app` to first result (median of {cold['samples']}) | "
        f"{_ms(cold['import_to_first_result_s'])} ({_ms(cold['import_to_first_result_cpu_s'])} CPU) | – |",
        f"| … of which `import app` | {_ms(cold['import_app_s'])} | – |",
        f"| … of which creating the boto3 clients (DynamoDB, Secrets Manager) | {_ms(cold['boto3_clients_s'])} | – |",
        f"| … of which the first invocation | {_ms(cold['first_invocation_s'])} | – |",
        f"| Cold start: new process to first result | {_ms(cold['process_spawn_to_first_result_s'])} | – |",
        f"| Warm run (median of {warm['runs']}) | {_ms(warm['wall_s'])} wall, {_ms(warm['cpu_s'])} CPU | – |",
        f"| LibreLink Up requests per run, warm / new container | {req['warm']['linkup']} / "
        f"{req['new_container']['linkup']} (graph) | {NLU_PER_RUN['linkup']} (connections + graph) |",
        f"| Nightscout requests per run, warm / new container | {req['warm']['nightscout']} / "
        f"{req['new_container']['nightscout']} (upload) | {NLU_PER_RUN['nightscout']} (last entry + upload) |",
        f"| AWS API calls per run, warm / new container | {req['warm']['aws']} ({aws_warm}) / "
        f"{req['new_container']['aws']} ({aws_new}) | – |",
        f"| LibreLink Up logins, first 30 days | {logins['logins_first_30_days']} | one per process restart |",
        f"| LibreLink Up logins in {logins['days']} days | {logins['logins_total']} (days "
        f"{', '.join(f'{d:g}' for d in logins['login_days'])}) | one per process restart |",
        f"| Peak memory: RSS after a cold start + {warm['runs_before_peak_rss']} runs | "
        f"{warm['peak_rss_mb_after_init_and_runs']:.0f} MB (of {results['memory_mb']} MB) | – |",
        f"| Peak memory: tracemalloc, one warm run | {warm['tracemalloc_peak_bytes'] / 1024:,.0f} KB | – |",
        f"| Package: function / layer (zip) | {sizes['function']['zip_bytes'] / 1024:.1f} KB / "
        f"{sizes['layer']['zip_bytes'] / 1024:.1f} KB | – |",
        f"| Log output per warm run (JSON logs + EMF) | {warm['log_bytes']:,.0f} bytes | – |",
        f"| State in DynamoDB after 13 h at the 5 / 1-minute schedule | account item "
        f"{state['item_bytes'].get('account', 0):,} B, target item "
        f"{results['steady_state']['5 minutes']['item_bytes'].get('target', 0):,} / "
        f"{results['steady_state']['1 minute']['item_bytes'].get('target', 0):,} B | – |",
        *_import_rows(results.get("import_csv")),
        "",
        "The Powertools layer (public) and boto3 (in the Lambda runtime) are not in the packages. Warm runs "
        "here come less than 5 minutes apart in real time, so the secret comes from the Powertools cache, which "
        "keeps it for an hour (and is skipped on the run after a login failure or a Nightscout 401/403).",
        "",
        f"Where a cold start's import time goes (`python -X importtime`, self time per package, "
        f"{imports['total_ms']:,.0f} ms over {imports['modules']} modules):",
        "",
        "| Package | Import time | Share |",
        "|---|---|---|",
    ]
    lines += [f"| {p['package']} | {p['ms']:,.0f} ms | {p['share']:.0%} |" for p in imports["top"]]
    return "\n".join(lines)


def _import_rows(figures: dict[str, Any] | None) -> list[str]:
    """`linkup-sync import-csv` of a 90-day Libre 3 export (tools/bench_import.py), when it was measured."""
    if not figures:
        return []
    first, again, month = figures["first"], figures["second"], figures["import_30_days"]
    return [
        f"| `import-csv`, {figures['days']}-day Libre 3 export ({first['historic_rows']:,} readings, "
        f"{first['file_mb']:.1f} MB), API v1 | {first['seconds']:.1f} s ({first['cpu_s_command']:.1f} s CPU of "
        f"the command), peak {first['max_rss_mb']:.0f} MB (30 days: {month['max_rss_mb']:.0f} MB) | – |",
        f"| `import-csv`, the same file again | {again['seconds']:.1f} s, {again['posts']} uploads, "
        f"{again['gets']} read pages | – |",
    ]


def cost_markdown(results: dict[str, Any]) -> str:
    """The monthly bill of the personal stack, from the measured units at the price constants."""
    bill = personal_bill(results)
    cost, basis, steady = bill["cost"], bill["basis"], results["steady_state"]
    five, one = cost["5 minutes"], cost["1 minute"]

    def units(label: str) -> str:
        return f"{steady[label]['query_read_units']} + {steady[label]['update_write_units']}"

    # One row per billed item: its label and its key in the cost of each schedule.
    items = [
        (f"Lambda, {basis['billed_ms']} ms × {basis['memory_mb']} MB arm64", "lambda_compute"),
        ("Lambda requests", "lambda_requests"),
        ("DynamoDB on demand, read + write request units per run", "dynamodb"),
        ("Secrets Manager, 1 secret + GetSecretValue at most hourly", "secrets_manager"),
        ("KMS, one Decrypt per GetSecretValue (AWS-managed key: no key fee)", "kms"),
        (
            f"CloudWatch Logs ingestion, {basis['log_bytes']:,.0f} + {LAMBDA_PLATFORM_LOG_BYTES} (Lambda's own) "
            "bytes per run",
            "cloudwatch_logs_ingestion",
        ),
        (f"CloudWatch Logs storage, {basis['retention_days']} days kept", "cloudwatch_logs_storage"),
        (
            f"CloudWatch custom metrics (EMF): {basis['custom_metrics']} ({', '.join(basis['custom_metric_names'])})",
            "cloudwatch_metrics",
        ),
        (f"CloudWatch alarms: {basis['alarms']} (stale data; failing runs on Lambda's Errors)", "cloudwatch_alarms"),
        (
            f"CloudWatch dashboards: {basis['dashboards']} (CreateDashboard=false; saved queries are free)",
            "cloudwatch_dashboards",
        ),
        (f"SNS, up to {EMAILS_PER_MONTH} alert e-mails a month", "sns"),
        ("EventBridge Scheduler, one invocation per run", "scheduler"),
    ]
    # DynamoDB also shows the request units behind its price.
    extra = {"dynamodb": {"5 minutes": f" ({units('5 minutes')})", "1 minute": f" ({units('1 minute')})"}}
    rows = [("Runs per month", f"{RUNS_PER_MONTH['5 minutes']:,}", f"{RUNS_PER_MONTH['1 minute']:,}")]
    rows += [
        (
            label,
            _usd(five[key]) + extra.get(key, {}).get("5 minutes", ""),
            _usd(one[key]) + extra.get(key, {}).get("1 minute", ""),
        )
        for label, key in items
    ]
    rows.append(("**Total**", f"**{_usd(five['total'])}**", f"**{_usd(one['total'])}**"))
    lines = [
        "Monthly AWS cost from these measurements (us-east-1 list prices, 30-day month, free tier ignored):",
        "",
        "| Item | 5-minute schedule | 1-minute schedule |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"Custom metrics seen over every run measured, failed ones included: "
        f"{', '.join(results['custom_metrics_seen']) or 'none'}. "
        "Lambda's duration is the median warm wall time measured here (mostly moto's DynamoDB emulation), "
        "rounded up to 1 ms; in AWS the run also waits for LibreLink Up and Nightscout over the internet and "
        "gets a fraction of a vCPU at 256 MB, so it takes longer, and Lambda still costs cents.",
    ]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------------


@dataclass
class BenchOptions:
    cold_starts: int = 5
    warm_runs: int = 50
    login_days: int = 200
    login_step_h: float = 6
    output: Path | None = RESULTS_FILE
    progress: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr, flush=True))


def run_bench(options: BenchOptions | None = None) -> dict[str, Any]:
    opts = options or BenchOptions()
    began = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "memory_mb": function_memory_mb()}
    results["package"] = package_sizes()
    phases: dict[str, float] = {}
    results["phase_seconds"] = phases

    def phase(name: str) -> None:
        phases[name] = round(time.perf_counter() - began - sum(phases.values()), 2)

    with moto_server() as endpoint, aws_environment(endpoint):
        captured = io.StringIO()
        with LocalStack(endpoint, log_sink=captured) as stack:
            stack.llu.add_patient(EMAIL)
            stack.provision()
            stack.run()  # the first run: login, patient, 12-hour back-fill
            opts.progress("requests per run ...")
            results["requests"] = measure_requests(stack)
            one_run = io.StringIO()
            stack.log_sink = one_run
            _one_run(stack)
            stack.log_sink = captured
            # Billed per metric and hour with data: those of every run cost a full month each.
            results["custom_metrics"] = emf_metrics(one_run.getvalue())
            results["custom_metrics_seen"] = emf_metrics(captured.getvalue() + one_run.getvalue())
            phase("setup_and_requests")
            opts.progress(f"cold starts ({opts.cold_starts} fresh processes) ...")
            results["cold_start"] = measure_cold_starts(stack, opts.cold_starts)
            phase("cold_starts")
            results["importtime"] = measure_importtime(stack)
            phase("importtime")
            opts.progress(f"warm runs ({opts.warm_runs} in one process) ...")
            results["warm"] = measure_warm(stack, opts.warm_runs)
            results["state"] = measure_state(stack)
            phase("warm")
        opts.progress(f"logins over {opts.login_days} simulated days ...")
        results["logins"] = measure_logins(endpoint, days=opts.login_days, step_h=opts.login_step_h)
        phase("logins")
        opts.progress("state size after 13 simulated hours at each schedule ...")
        results["steady_state"] = {
            label: measure_steady_state(endpoint, interval_s=SCHEDULE_S[label]) for label in RUNS_PER_MONTH
        }
        phase("steady_state")
    opts.progress("import-csv of a 90-day LibreView export ...")
    results["import_csv"] = measure_import()
    phase("import_csv")
    results["billing"] = template_billing()
    results["nightscout_librelink_up_per_run"] = NLU_PER_RUN
    results["bench_seconds"] = time.perf_counter() - began
    if opts.output is not None:
        opts.output.parent.mkdir(parents=True, exist_ok=True)
        opts.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold-starts", type=int, default=5)
    parser.add_argument("--warm-runs", type=int, default=50)
    parser.add_argument("--days", type=int, default=200, help="simulated days for the login count")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite the documentation's blocks (e.g. with another --output)"
    )
    args = parser.parse_args(argv)
    results = run_bench(
        BenchOptions(cold_starts=args.cold_starts, warm_runs=args.warm_runs, login_days=args.days, output=args.output)
    )
    print(markdown(results))
    print(f"\nRaw numbers: {args.output} ({results['bench_seconds']:.0f} s)", file=sys.stderr)
    if not args.no_docs:
        from tools.docs_figures import rewrite_docs

        rewrite_docs()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
