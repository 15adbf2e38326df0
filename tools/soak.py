"""Soak test: the real handler over simulated days of scheduled runs, with seeded random faults.

    python -m tools.soak --days 90 --seed 1 [--step-minutes 15] [--cold-every-days 7] [--quiet]

LocalStack (tools/local_stack.py) runs the LibreLink Up simulator, the Nightscout stand-in and the real
handler on one virtual clock, with moto for DynamoDB and Secrets Manager, all on 127.0.0.1. Every run
of the schedule may get faults, each kind with a small rate per simulated day, placed by a seeded
random generator (the same seed gives the same fault schedule; real-time races such as two
overlapping runs may interleave differently):

- LibreLink Up: 5xx, HTTP 429 HTML with and without Retry-After, Cloudflare 403, 430 on login,
  timeouts (a request held longer than the run's deadline), truncated and non-JSON bodies, revoked
  tokens (401), maintenance windows;
- Nightscout: 5xx, timeouts, 401 blips, outages of 1-6 hours;
- DynamoDB: throttling that outlasts botocore's own retries, conditional-write conflicts on the
  account and the target item;
- process: a crash after the upload and before the state write, two overlapping runs, new containers
  and (long profile) real cold starts in a fresh Python process.

Afterwards (and daily) it checks the promise of the bridge: no duplicate in Nightscout; no reading
missing that LibreLink Up offered while Nightscout was reachable within the next 12 hours; the stored
ledger only names readings Nightscout has; login attempts within the bounds of issue 3; no secret in
any output; no exception other than the package's typed errors. Prints a summary table and exits 1
when a check failed. `make soak` runs the long profile; tests/soak runs a short one.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import io
import itertools
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO, cast

from tools.local_stack import (
    EMAIL,
    PASSWORD,
    AwsCalls,
    LocalStack,
    aws_environment,
    handler_module,
    handler_output,
    moto_server,
)
from tools.simulators.librelinkup import HISTORY_WINDOW_S
from tools.simulators.nightscout import UNAUTHORIZED_BODY

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from linkup_sync.runtime import Dependencies
    from linkup_sync.state.dynamodb import DynamoDBStateStore

DAY_S = 86_400
GAP_S = 150  # a history point "covers" a reading within this distance (selection.GAP_S)
HOLD_S = 0.8  # real seconds a "timeout" fault holds a request; more than the run's deadline
RUN_DEADLINE_S = 0.5  # the run's deadline in the soak (the real one is 20 s): keeps timeouts cheap
GOOD_WINDOW_S = 3600  # Nightscout and LibreLink Up up this long within a reading's 12 h: it must arrive
TAIL_S = 2 * 3600  # fault-free runs at the end, so back-offs expire and the newest readings arrive
RECENT_S = 15 * 60  # readings first offered in the last minutes of the soak are not checked
ARCHIVE_AFTER_S = 14 * 3600  # Nightscout entries older than this can never be written again
TICKET_LIFETIME_S = 180 * DAY_S

# Fault kinds and their rates per simulated day. Each kind happens at least once in any soak.
RATES: dict[str, float] = {
    "llu_5xx": 2.0,
    "llu_429_html": 1.0,
    "llu_429_retry_after": 1.0,
    "llu_cloudflare_403": 1.0,
    "llu_430_on_login": 0.3,  # waits for the next login
    "llu_timeout": 1.0,  # held past the deadline, then closed without a reply
    "llu_slow_graph": 0.5,  # answered, but only after the deadline
    "llu_truncated_json": 1.0,
    "llu_non_json": 1.0,
    "llu_token_revoked": 1.0,
    "llu_maintenance": 0.3,  # a 10-90 minute window
    "ns_5xx": 2.0,
    "ns_timeout": 1.0,  # held past the deadline, then stored (the bridge never hears it)
    "ns_401_blip": 1.0,
    "ns_outage": 0.25,  # 1-6 hours unreachable
    "ddb_throttled": 2.0,  # one DynamoDB call fails as after botocore's retries
    "ddb_conflict_target": 2.0,  # the target item changes between the run's read and its write
    "ddb_conflict_account": 1.0,  # the account item changes between the run's read and its write
    "crash_after_upload": 1.0,  # the process dies after Nightscout accepted, before the state write
    "overlapping_runs": 2.0,
    "new_container": 6.0,
}
COLD_PROCESS = "cold_process"  # a real cold start in a new Python process (long profile only)
WINDOW_KINDS = ("llu_maintenance", "ns_outage")


class SimulatedCrash(Exception):
    """The process died after the upload and before the state write (injected)."""


# --- faults that live inside this process: DynamoDB calls and the state store ------------------------


class FaultPlan:
    """Faults armed for the next matching call (thread-safe: two overlapping runs share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.throttle_in: int | None = None  # fail the n-th DynamoDB call from now
        self.crash = False
        self.conflict_target = False
        self.conflict_account = False
        self.fired: Counter[str] = Counter()
        self.run_fired: list[str] = []  # what fired during the current step

    def disarm(self) -> None:
        with self._lock:
            self.throttle_in = None
            self.crash = self.conflict_target = self.conflict_account = False

    def take_throttle(self) -> bool:
        with self._lock:
            if self.throttle_in is None:
                return False
            self.throttle_in -= 1
            if self.throttle_in > 0:
                return False
            self.throttle_in = None
            self._fire("ddb_throttled")
            return True

    def take(self, name: str) -> bool:
        with self._lock:
            if not getattr(self, name):
                return False
            setattr(self, name, False)
            return True

    def fire(self, kind: str) -> None:
        with self._lock:
            self._fire(kind)

    def _fire(self, kind: str) -> None:
        self.fired[kind] += 1
        self.run_fired.append(kind)


class FaultingAwsCalls(AwsCalls):
    """The stack's botocore 'before-call' hook (registered on every new container's clients), which also
    fails an armed DynamoDB call with ProvisionedThroughputExceededException.

    An exception raised in 'before-call' does not pass through botocore's retry loop (DynamoDB's client
    retries throttling up to 10 times by itself), so this is what the bridge sees when the throttling
    outlasted those retries: the only kind the bridge itself has to handle.
    """

    def __init__(self, plan: FaultPlan) -> None:
        super().__init__()
        self.plan = plan

    def __call__(self, model: Any = None, **kwargs: Any) -> None:
        super().__call__(model=model, **kwargs)
        if model is not None and model.service_model.service_name == "dynamodb" and self.plan.take_throttle():
            from botocore.exceptions import ClientError

            raise ClientError(
                {
                    "Error": {
                        "Code": "ProvisionedThroughputExceededException",
                        "Message": "The level of configured provisioned throughput for the table was exceeded.",
                    },
                    "ResponseMetadata": cast(Any, {"HTTPStatusCode": 400}),
                },
                model.name,
            )


def bump_rev(client: DynamoDBClient, table_name: str, key: str, sk: str) -> bool:
    """Another writer changes the item between a run's read and its write: its rev moves on."""
    try:
        client.update_item(
            TableName=table_name,
            Key={"pk": {"S": key}, "sk": {"S": sk}},
            UpdateExpression="SET #rev = #rev + :one",
            ConditionExpression="attribute_exists(#rev)",
            ExpressionAttributeNames={"#rev": "rev"},
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True


@contextlib.contextmanager
def faulty_store(plan: FaultPlan, bump: Callable[[str, str], bool]) -> Iterator[None]:
    """Patch DynamoDBStateStore (for every container in this process) with the armed store faults."""
    from linkup_sync.state.dynamodb import ACCOUNT_SK, TARGET_PREFIX, DynamoDBStateStore

    record_upload, save_account = DynamoDBStateStore.record_upload, DynamoDBStateStore.save_account

    def faulty_record_upload(store: DynamoDBStateStore, key: str, target: Any, added: Any) -> Any:
        if plan.take("crash"):
            plan.fire("crash_after_upload")
            raise SimulatedCrash("simulated crash after the upload, before the state write")
        if plan.take("conflict_target") and bump(key, TARGET_PREFIX + target.target_id):
            plan.fire("ddb_conflict_target")
        return record_upload(store, key, target, added)

    def faulty_save_account(store: DynamoDBStateStore, key: str, account: Any) -> Any:
        if plan.take("conflict_account") and bump(key, ACCOUNT_SK):
            plan.fire("ddb_conflict_account")
        return save_account(store, key, account)

    DynamoDBStateStore.record_upload = faulty_record_upload  # type: ignore[method-assign,assignment]
    DynamoDBStateStore.save_account = faulty_save_account  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        DynamoDBStateStore.record_upload = record_upload  # type: ignore[method-assign]
        DynamoDBStateStore.save_account = save_account  # type: ignore[method-assign]


class Capture(io.TextIOBase):
    """Where the handler's log lines and metrics go during the soak; drained and scanned daily."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[str] = []
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._parts.append(text)
        self.total += len(text)
        return len(text)

    def drain(self) -> str:
        parts, self._parts = self._parts, []
        return "".join(parts)


# --- results -----------------------------------------------------------------------------------------


@dataclass
class Login:
    seq: int  # position among all LibreLink Up requests
    ok: bool  # answered 200 without an injected fault
    step: int
    persisted: bool = True  # the ticket it produced reached the state table
    excused: bool = False  # not persisted because its run failed (a "bad state")


@dataclass
class SoakResult:
    days: float
    seed: int
    step_s: int
    runs: int = 0
    ok_runs: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    offered_current: int = 0
    offered_history: int = 0
    excused: int = 0  # offered, but no hour with both services up before the reading left the 12 h window
    in_nightscout: int = 0
    duplicates: int = 0
    missing: list[str] = field(default_factory=list)
    ledger_problems: list[str] = field(default_factory=list)
    state_problems: list[str] = field(default_factory=list)
    login_problems: list[str] = field(default_factory=list)
    secret_leaks: list[str] = field(default_factory=list)
    logins: int = 0
    failed_logins: int = 0
    revocations: int = 0
    max_gap_s: int = 0
    output_bytes: int = 0
    wall_s: float = 0.0

    def problems(self) -> list[str]:
        found = [f"unexpected exception: {u}" for u in self.unexpected[:5]]
        if self.duplicates:
            found.append(f"{self.duplicates} duplicate(s) in Nightscout")
        found += [f"missing: {m}" for m in self.missing[:5]]
        found += self.ledger_problems[:5] + self.state_problems[:5] + self.login_problems[:5]
        found += self.secret_leaks[:5]
        return found

    def table(self) -> str:
        def kinds(counter: Counter[str]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"

        rows = [
            ("runs", f"{self.runs} ({self.ok_runs} uploaded or had nothing new)"),
            ("simulated days", f"{self.days:g} at a {self.step_s // 60}-minute schedule, seed {self.seed}"),
            ("faults injected", f"{sum(self.faults.values())}: {kinds(self.faults)}"),
            ("failed runs", f"{sum(self.failed.values())}: {kinds(self.failed)}"),
            ("skipped runs", f"{sum(self.skipped.values())}: {kinds(self.skipped)}"),
            (
                "readings offered",
                f"{self.offered_current} current + {self.offered_history} history points"
                f" ({self.excused} not demanded: no hour with both services up before they left"
                " the 12-hour window)",
            ),
            ("readings in Nightscout", str(self.in_nightscout)),
            ("duplicates", str(self.duplicates)),
            ("missing", str(len(self.missing))),
            ("ledger not in Nightscout", str(len(self.ledger_problems))),
            ("logins", f"{self.logins} ({self.failed_logins} failed) for {self.revocations} revocations"),
            ("login-bound violations", str(len(self.login_problems))),
            ("secrets in output", f"{len(self.secret_leaks)} in {self.output_bytes / 1e6:.1f} MB scanned"),
            ("unexpected exceptions", str(len(self.unexpected))),
            ("max gap in Nightscout", f"{self.max_gap_s / 60:.1f} min"),
            ("wall time", f"{self.wall_s:.1f} s"),
            ("result", "PASS" if not self.problems() else "FAIL"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"| {'soak':<{width}} | result |", f"|{'-' * (width + 2)}|--------|"]
        lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
        return "\n".join(lines)


# --- the engine --------------------------------------------------------------------------------------


def fault_schedule(
    rng: random.Random, steps: int, step_s: int, days: float, cold_every_days: float | None
) -> dict[int, list[str]]:
    """Which step gets which faults: round(rate * days) of each kind (at least one), at random steps.

    The first hour stays clean (the first run fills the 12-hour window), and so does the tail.
    """
    first = max(1, 3600 // step_s)
    last = steps - 1
    schedule: dict[int, list[str]] = {}
    for kind, rate in RATES.items():
        for _ in range(max(1, round(rate * days))):
            schedule.setdefault(rng.randint(first, last), []).append(kind)
    if cold_every_days:
        for _ in range(max(1, round(days / cold_every_days))):
            schedule.setdefault(rng.randint(first, last), []).append(COLD_PROCESS)
    return schedule


def union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def complement(bad: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    good, cursor = [], start
    for a, b in bad:
        if a > cursor:
            good.append((cursor, min(a, end)))
        cursor = max(cursor, b)
    if cursor < end:
        good.append((cursor, end))
    return good


# Faults armed in the plan: counted when they fire, not when they are armed.
_ARMED_FAULTS = frozenset(("ddb_throttled", "ddb_conflict_target", "ddb_conflict_account", "crash_after_upload"))


def _near(t: int, among: list[int]) -> bool:
    i = bisect.bisect_left(among, t - GAP_S)
    return i < len(among) and among[i] <= t + GAP_S


class _BothUp:
    """The stretches (start, end) in which LibreLink Up and Nightscout were both up, in time order."""

    def __init__(self, good: list[tuple[float, float]]) -> None:
        self.good = good
        self.starts = [a for a, _ in good]

    def long_enough(self, poll: float, until: float) -> bool:
        """Both services were up for GOOD_WINDOW_S between the poll and the end of the reading's window."""
        i = max(0, bisect.bisect_right(self.starts, poll) - 1)
        for a, b in self.good[i:]:
            if a >= until:
                break
            if min(b, until) - max(a, poll) >= GOOD_WINDOW_S:
                return True
        return False


class Soak:
    def __init__(
        self,
        stack: LocalStack,
        *,
        days: float,
        seed: int,
        step_s: int,
        cold_every_days: float | None,
        log: Callable[[str], None],
    ) -> None:
        self.stack = stack
        self.rng = random.Random(seed)
        self.step_s = step_s
        self.steps = max(1, round(days * DAY_S / step_s))
        self.tail_steps = max(1, TAIL_S // step_s)
        self.result = SoakResult(days=days, seed=seed, step_s=step_s)
        self.schedule = fault_schedule(self.rng, self.steps, step_s, days, cold_every_days)
        self.log = log
        self.plan = FaultPlan()
        self.capture = Capture()
        self.start = stack.clock()
        self.windows: dict[str, list[tuple[float, float]]] = {kind: [] for kind in WINDOW_KINDS}
        # what LibreLink Up offered: reading instant -> first poll that offered it
        self.current: dict[int, float] = {}
        self.history: dict[int, float] = {}
        self.archive: list[int] = []  # Nightscout sgv instants moved out of the stand-in
        self.seq = 0  # LibreLink Up requests consumed so far
        self.revoked_at: list[int] = []  # request sequence numbers of the revocations
        self.logins: list[Login] = []
        self.forbidden: set[str] = set()
        self.second: Dependencies | None = None  # the other container of overlapping runs
        self.known_ticket: str | None = None  # the ticket token the state table held after the last login
        self.step = 0
        import boto3

        self._ddb = boto3.client("dynamodb", endpoint_url=stack.moto_endpoint)

    # --- faults --------------------------------------------------------------------------------------

    def bump(self, key: str, sk: str) -> bool:
        return bump_rev(self._ddb, self.stack.env["STATE_TABLE_NAME"], key, sk)

    def inject(self, kind: str) -> None:
        action = self._fault_actions().get(kind)
        if action is not None:
            action()
        if kind not in _ARMED_FAULTS:
            self.result.faults[kind] += 1  # the armed ones are counted when they fire

    def _fault_actions(self) -> dict[str, Callable[[], object]]:
        """What each kind of fault does (each draws from the soak's random source only when it is injected)."""
        llu, ns, rng = self.stack.llu, self.stack.ns, self.rng
        return {
            "llu_5xx": lambda: llu.server_error(1, status=rng.choice((500, 502, 503, 504))),
            "llu_429_html": lambda: llu.rate_limit_html(1),
            "llu_429_retry_after": lambda: llu.rate_limit_html(1, retry_after=rng.choice((60, 300, 900))),
            "llu_cloudflare_403": lambda: llu.cloudflare_block(1),
            "llu_430_on_login": lambda: llu.http_430_on_login(1),
            "llu_timeout": lambda: llu.hang(1, HOLD_S),
            "llu_slow_graph": lambda: llu.delay(1, HOLD_S, path="/llu/connections/"),
            "llu_truncated_json": lambda: llu.truncated_json(1),
            "llu_non_json": lambda: llu.non_json(1),
            "llu_token_revoked": self._revoke_tokens,
            "llu_maintenance": lambda: self._open_window("llu_maintenance", 10, 90),
            "ns_5xx": lambda: ns.fail_next(
                1,
                status=rng.choice((500, 502, 503)),
                body="<html><body>Application error</body></html>",
                path="/api/v1/entries",
            ),
            "ns_timeout": lambda: ns.hang_next(1, HOLD_S, path="/api/v1/entries"),
            "ns_401_blip": lambda: ns.fail_next(
                1,
                status=401,
                body=json.dumps(UNAUTHORIZED_BODY),
                content_type="application/json",
                path="/api/v1/entries",
            ),
            "ns_outage": lambda: self._open_window("ns_outage", 60, 360),
            "ddb_throttled": lambda: self._arm(throttle_in=rng.randint(1, 3)),
            "ddb_conflict_target": lambda: self._arm(conflict_target=True),
            "ddb_conflict_account": lambda: self._arm(conflict_account=True),
            "crash_after_upload": lambda: self._arm(crash=True),
            "new_container": self.stack.new_container,
        }

    def _arm(self, **armed: object) -> None:
        """A fault of the state table or the run, set in the plan: it fires (and is counted) later."""
        for name, value in armed.items():
            setattr(self.plan, name, value)

    def _revoke_tokens(self) -> None:
        llu = self.stack.llu
        llu.revoke_tokens()
        with llu._lock:  # the position in the request log, atomically
            self.revoked_at.append(self.seq + len(llu.requests))
        self.result.revocations += 1

    def _open_window(self, kind: str, shortest_min: int, longest_min: int) -> None:
        """An outage from now, for a random number of minutes."""
        now = self.stack.clock()
        self.windows[kind].append((now, now + self.rng.randint(shortest_min, longest_min) * 60))

    def apply_windows(self) -> None:
        now = self.stack.clock()
        maintenance = any(a <= now < b for a, b in self.windows["llu_maintenance"])
        outage = any(a <= now < b for a, b in self.windows["ns_outage"])
        self.stack.llu.set_maintenance(maintenance)
        self.stack.ns.set_unreachable(outage)

    # --- runs ----------------------------------------------------------------------------------------

    def outcome(self, call: Callable[[], dict[str, Any]]) -> tuple[str, str]:
        """('ok' | 'skipped' | 'failed' | 'unexpected', reason); texts go to the capture for the scan."""
        from linkup_sync.errors import LinkupSyncError

        try:
            result = call()
        except SimulatedCrash:
            return "failed", "crash_after_upload (injected)"
        except LinkupSyncError as exc:
            self.capture.write(f"{exc!s}\n{exc!r}\n")
            return "failed", exc.reason
        except Exception as exc:
            self.capture.write(f"{exc!s}\n{exc!r}\n")
            return "unexpected", f"{type(exc).__name__}: {exc}"
        self.capture.write(json.dumps(result, default=str) + "\n")
        if result.get("skipped"):
            return "skipped", str(result["skipped"])
        return "ok", ""

    def second_container(self) -> Dependencies:
        if self.second is None:
            from linkup_sync.runtime import Dependencies

            deps = Dependencies.from_env(self.stack.env, clock=self.stack.clock)
            deps.deadline_s = RUN_DEADLINE_S
            cast("DynamoDBStateStore", deps.store).client.meta.events.register("before-call", self.stack.aws_calls)
            self.second = deps
        return self.second

    def run_overlapping(self) -> list[tuple[str, str]]:
        """This container's scheduled run and another container's run, at the same moment."""
        from linkup_sync.runtime import run_once

        other = self.second_container()
        barrier = threading.Barrier(2)
        outcomes: list[tuple[str, str]] = [("unexpected", "the run did not finish"), ("unexpected", "did not finish")]

        def first() -> None:
            barrier.wait(5)
            outcomes[0] = self.outcome(self.stack.run)

        def second() -> None:
            barrier.wait(5)
            outcomes[1] = self.outcome(lambda: run_once(other).as_dict())

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return outcomes

    def run_cold(self) -> tuple[str, str]:
        """A real cold start: the handler in a fresh Python process (its output is scanned too)."""
        try:
            result = self.stack.cold_run(timeout_s=120)
        except subprocess.TimeoutExpired:
            return "unexpected", "the cold process did not finish in 120 s"
        except RuntimeError:
            text = self.stack.last_cold_output
            self.capture.write(text)
            if "unexpected failure" in text:
                return "unexpected", "cold process: " + text[-300:]
            reasons = [
                json.loads(ln).get("reason")
                for ln in text.splitlines()
                if ln.startswith("{") and '"level":"ERROR"' in ln
            ]
            return "failed", str(next((r for r in reversed(reasons) if r), "cold process failed"))
        self.capture.write(self.stack.last_cold_output)
        return ("skipped", str(result["skipped"])) if result.get("skipped") else ("ok", "")

    def record(self, outcomes: list[tuple[str, str]]) -> None:
        r = self.result
        for status, reason in outcomes:
            r.runs += 1
            if status == "ok":
                r.ok_runs += 1
            elif status == "skipped":
                r.skipped[reason] += 1
            elif status == "failed":
                r.failed[reason] += 1
            else:
                r.failed["UNEXPECTED"] += 1
                r.unexpected.append(f"step {self.step}: {reason}")

    # --- what the simulators saw ---------------------------------------------------------------------

    def consume_linkup(self, failed: bool) -> None:
        """Take the simulator's new requests and served polls out of it (keeps memory flat)."""
        llu = self.stack.llu
        with llu._lock:  # copy and clear atomically (a held request may still land)
            requests, served = list(llu.requests), list(llu.served)
            llu.requests.clear()
            llu.served.clear()
            llu.served_connections.clear()
        new_logins = []
        for request in requests:
            self.seq += 1
            token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            self.forbidden.update(v for v in (token, request.headers.get("account-id", "").strip()) if v)
            if request.method == "POST" and request.path == "/llu/auth/login":
                ok = request.fault is None and request.status == 200
                new_logins.append(Login(seq=self.seq, ok=ok, step=self.step))
                self.result.logins += 1
                self.result.failed_logins += not ok
        for poll in served:
            if poll.current_epoch_s is not None:
                self.current.setdefault(poll.current_epoch_s, poll.time)
            for t in poll.history_epoch_s:
                self.history.setdefault(t, poll.time)
        if any(login.ok for login in new_logins):
            # Only a login changes the stored ticket: look at it after every step that logged in.
            ticket = self.stack.stored_account().account.ticket
            stored: str | None = ticket.token if ticket is not None else None
            if ticket is not None:
                self.forbidden.update((ticket.token, ticket.account_id, ticket.user_id))
            if stored == self.known_ticket:  # the new ticket never reached the state table
                last = [login for login in new_logins if login.ok][-1]
                last.persisted = False
                last.excused = failed
            self.known_ticket = stored
        self.logins.extend(new_logins)

    def archive_nightscout(self) -> None:
        """Move Nightscout entries that can never be written again out of the stand-in (its upserts
        scan every entry, which would make a months-long soak quadratic)."""
        ns = self.stack.ns
        cutoff_ms = (self.stack.clock() - ARCHIVE_AFTER_S) * 1000
        with ns._lock:  # atomic against a held request that lands now
            old = [d for d in ns._entries if d.get("type") == "sgv" and d.get("date", 0) < cutoff_ms]
            if old:
                ids = {id(d) for d in old}
                ns._entries[:] = [d for d in ns._entries if id(d) not in ids]
        self.archive.extend(int(d["date"]) // 1000 for d in old)
        ns.clear_requests()

    def nightscout_instants(self) -> list[int]:
        live = [int(e["date"]) // 1000 for e in self.stack.ns.sgv_entries()]
        return sorted(self.archive + live)

    def scan_output(self) -> None:
        text = self.capture.drain()
        self.result.output_bytes += len(text)
        for value in sorted(self.forbidden, key=len):
            if value in text:
                self.result.secret_leaks.append(f"step {self.step}: a secret ({len(value)} characters) in the output")

    def check_ledger(self, instants: set[int]) -> None:
        missing = sorted(set(self.stack.stored_ledger()) - instants)
        if missing:
            self.result.ledger_problems.append(
                f"step {self.step}: the ledger names {len(missing)} instant(s) Nightscout lacks, e.g. {missing[:3]}"
            )

    def daily(self) -> None:
        self.scan_output()
        self.archive_nightscout()
        self.check_ledger(set(self.nightscout_instants()))
        self.stack.aws_calls.calls.clear()

    # --- the loop ------------------------------------------------------------------------------------

    def run(self) -> SoakResult:
        stack = self.stack
        started = time.perf_counter()
        self.forbidden.update(
            (
                PASSWORD,
                stack.ns_token,
                hashlib.sha1(stack.ns_token.encode()).hexdigest(),  # noqa: S324
                hashlib.sha256(stack.ns_token.encode()).hexdigest(),
            )
        )
        steps_per_day = max(1, DAY_S // self.step_s)
        with faulty_store(self.plan, self.bump), handler_output(cast(TextIO, self.capture)):
            for step in range(self.steps + self.tail_steps):
                self.step = step
                tail = self.step >= self.steps
                if self.step == self.steps:  # the tail: every fault off, so the checks can demand recovery
                    stack.llu.clear_faults()
                    stack.ns.clear_faults()
                    self.plan.disarm()
                    for kind in WINDOW_KINDS:
                        self.windows[kind] = [(a, min(b, stack.clock())) for a, b in self.windows[kind]]
                kinds = [] if tail else self.schedule.get(self.step, [])
                for kind in kinds:
                    if kind != COLD_PROCESS and kind != "overlapping_runs":
                        self.inject(kind)
                self.apply_windows()
                self.plan.run_fired = []
                if COLD_PROCESS in kinds:
                    self.result.faults[COLD_PROCESS] += 1
                    outcomes = [self.run_cold()]
                elif "overlapping_runs" in kinds:
                    self.result.faults["overlapping_runs"] += 1
                    outcomes = self.run_overlapping()
                else:
                    outcomes = [self.outcome(stack.run)]
                self.record(outcomes)
                self.consume_linkup(any(s in ("failed", "unexpected") for s, _ in outcomes))
                if self.step % steps_per_day == steps_per_day - 1:
                    self.daily()
                    day = (self.step + 1) // steps_per_day
                    self.log(
                        f"day {day}: {self.result.runs} runs, {sum(self.result.failed.values())} failed, "
                        f"{self.result.logins} logins, {time.perf_counter() - started:.0f} s"
                    )
                stack.tick(self.step_s)
            time.sleep(HOLD_S + 0.2)  # held requests land (or are dropped) before the final look
            self.consume_linkup(False)
            self.scan_output()
        for kind, fired in self.plan.fired.items():
            self.result.faults[kind] += fired
        self.final_checks(stack.clock())
        self.result.wall_s = time.perf_counter() - started
        return self.result

    # --- the checks ----------------------------------------------------------------------------------

    def final_checks(self, end: float) -> None:
        r, ns = self.result, self.stack.ns
        stored = self.nightscout_instants()
        stored_set = set(stored)
        r.in_nightscout = len(stored)
        r.duplicates = len(ns.duplicates()) + (len(stored) - len(stored_set))
        self.check_ledger(stored_set)
        settled = [t for t in stored if t <= end - 1800]  # the newest history points are still on their way
        r.max_gap_s = max((b - a for a, b in itertools.pairwise(settled)), default=0)
        bad = union(self.windows["llu_maintenance"] + self.windows["ns_outage"])
        # The soak ends with a fault-free tail: the last good stretch goes on after the end.
        up = _BothUp([(a, b if b < end else float("inf")) for a, b in complement(bad, self.start, end)])
        r.offered_current, r.offered_history = len(self.current), len(self.history)
        self.check_current(end, stored_set, sorted(t for t in stored if t in self.history), up)
        self.check_history(end, stored, up)
        self.check_logins(end)
        self.check_state()

    def check_current(self, end: float, stored_set: set[int], stored_history: list[int], up: _BothUp) -> None:
        """Every current reading offered while both services were up long enough is in Nightscout (itself, or
        a history point of the same moment)."""
        r = self.result
        recent = end - RECENT_S  # offered this late, a reading may still be on its way
        for t, poll in sorted(self.current.items()):
            if poll >= recent:
                continue
            if not up.long_enough(poll, t + HISTORY_WINDOW_S - GAP_S):
                r.excused += 1
            elif t not in stored_set and not _near(t, stored_history):
                r.missing.append(f"current reading {_iso(t)} (offered at {_iso(poll)})")

    def check_history(self, end: float, stored: list[int], up: _BothUp) -> None:
        """Every history point offered while both services were up long enough is in Nightscout."""
        r = self.result
        recent = end - RECENT_S
        for t, poll in sorted(self.history.items()):
            if poll >= recent:
                continue
            if not up.long_enough(poll, t + HISTORY_WINDOW_S):
                r.excused += 1
            elif not _near(t, stored):
                r.missing.append(f"history point {_iso(t)} (offered at {_iso(poll)})")

    def check_logins(self, end: float) -> None:
        """Issue 3: at most one login per ticket lifetime plus one per revocation; never two logins in a
        row unless the first failed, was revoked, or could not be stored because its run failed."""
        r = self.result
        renewals = int((end - self.start) // (TICKET_LIFETIME_S - DAY_S))
        justified = sum(1 for login in self.logins if not login.ok or login.excused)
        ok = sum(1 for login in self.logins if login.ok)
        if ok > 1 + r.revocations + renewals + justified:
            r.login_problems.append(f"{ok} successful logins for {r.revocations} revocations")
        for before, after in itertools.pairwise(self.logins):
            revoked = any(before.seq < seq < after.seq for seq in self.revoked_at)
            if before.ok and not before.excused and not revoked:
                why = "" if before.persisted else " (its ticket was never stored although the run went on)"
                r.login_problems.append(
                    f"login at step {after.step} follows the login at step {before.step} with no revocation or "
                    f"failure between them{why}"
                )

    def check_state(self) -> None:
        account = self.stack.stored_account().account
        now = self.stack.clock()
        if account.ticket is None or not account.ticket.usable_at(now):
            self.result.state_problems.append("state: no usable ticket stored after the healthy tail")
        if account.backoff_until and account.backoff_until > now:
            self.result.state_problems.append("state: still backing off after the healthy tail")
        if account.bad_credentials_version or account.login_not_before:
            self.result.state_problems.append("state: a login breaker is set after the healthy tail")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def quiet_disconnects(stack: LocalStack) -> None:
    """A client that gave up on a held request closes its socket; the simulator's late reply then meets
    a broken pipe, which socketserver would print as a traceback. Those are expected here."""
    for server in (stack.llu._server, stack.ns._server):
        if server is None:
            continue
        report = server.handle_error

        def handle_error(request: Any, address: Any, report: Callable[[Any, Any], None] = report) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):
                report(request, address)

        server.handle_error = handle_error  # type: ignore[method-assign,assignment]


def run_soak(
    days: float,
    seed: int,
    *,
    step_minutes: int | None = None,
    cold_every_days: float | None = None,
    log: Callable[[str], None] | None = None,
) -> SoakResult:
    """One soak on its own moto server and simulators. `step_minutes` defaults to the 5-minute schedule
    up to two weeks and to 15 minutes beyond (the long profile)."""
    step_s = 60 * (step_minutes or (5 if days <= 14 else 15))
    with moto_server() as endpoint, aws_environment(endpoint):
        handler_module()  # the handler's logger exists before its output is redirected
        with LocalStack(endpoint) as stack:
            stack.deadline_s = RUN_DEADLINE_S
            quiet_disconnects(stack)
            soak = Soak(
                stack, days=days, seed=seed, step_s=step_s, cold_every_days=cold_every_days, log=log or (lambda _: None)
            )
            stack.aws_calls = FaultingAwsCalls(soak.plan)
            stack.llu.add_patient(EMAIL)
            stack.provision()
            return soak.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=90)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--step-minutes", type=int, default=None, help="minutes between runs (default: 5 up to 14 days, else 15)"
    )
    parser.add_argument(
        "--cold-every-days",
        type=float,
        default=None,
        help="a real cold start in a new process this often (default: weekly beyond 14 days)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    cold = args.cold_every_days if args.cold_every_days is not None else (7.0 if args.days > 14 else None)
    progress = (lambda _: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    result = run_soak(args.days, args.seed, step_minutes=args.step_minutes, cold_every_days=cold or None, log=progress)
    print(result.table())
    for problem in result.problems():
        print("FAIL:", problem)
    return 1 if result.problems() else 0


if __name__ == "__main__":
    raise SystemExit(main())
