"""`make demo`: several simulated hours of the real handler, with no AWS account and no credentials.

    python -m tools.demo [--runs 72] [--interval 300]

A LibreLink Up simulator and a Nightscout stand-in run on 127.0.0.1, moto stands in for DynamoDB and
Secrets Manager, and one virtual clock drives all of them. The real handler (functions/sync/app.py)
runs every 5 simulated minutes. Halfway, one run happens in a fresh Python process (a Lambda cold
start); later Nightscout is unreachable for half an hour and the runs after it back-fill the gap.
Every run prints one line; at the end the totals are checked against what the simulators saw, and a
text chart shows the glucose curve that reached the Nightscout stand-in.

Exits 0 only if Nightscout holds no duplicates, there was exactly one login, and every reading
LibreLink Up offered is in Nightscout (current readings exactly, history points within 150 s).

The output and its totals go to docs/results/demo.json (kept in the repository), and the documentation's
blocks that show them are rewritten from it (tools/docs_figures.py), so the pages show this run exactly.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tools.local_stack import EMAIL, ByteCounter, LocalStack, aws_environment, moto_server

RUNS = 72  # six simulated hours
INTERVAL_S = 300  # the template's default schedule
COLD_AT = 36  # index of the run that happens in a fresh process
OUTAGE_AT = 48  # index of the first run that finds Nightscout unreachable
OUTAGE_RUNS = 6  # 30 minutes
RUNS_AFTER_OUTAGE = 5  # the back-fill needs ~20 minutes: LibreLink Up's history lags the current reading
CHART_ROWS = 12
GAP_S = 150  # a history point counts as present when an entry lies within this many seconds
TZ = "Europe/Berlin"
NS_DOWN = "NS down — nothing lost, state held"
RESULTS_FILE = Path(__file__).resolve().parent.parent / "docs" / "results" / "demo.json"


@dataclass
class RunRecord:
    index: int
    time: float
    kind: str  # "warm", "cold" (a new container: the first run, and the one in a fresh process) or "failed"
    uploaded: int = 0
    gap_filled: int = 0
    logins: int = 0
    llu_requests: int = 0
    ns_requests: int = 0
    message: str = ""
    state_held: bool = True
    duplicates: int = 0  # readings stored twice in Nightscout after this run (the demo fails unless 0)
    fresh_process: bool = False  # ran in a new Python process (python -m tools.run_handler)


@dataclass
class DemoSummary:
    runs: list[RunRecord]
    readings_in_nightscout: int
    duplicates: int
    logins: int
    uploaded: int
    offered_current: int
    offered_history: int
    missing_current: list[int]
    history_holes: list[int]
    outage_current_covered: int  # current readings offered only while Nightscout was down, found within GAP_S
    chart: list[str]  # the plot rows, top (highest mg/dL) first
    chart_axis: list[str]  # time axis and legend below the plot
    log_bytes: int  # bytes of JSON logs and EMF metrics the in-process runs wrote
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def failed_runs(self) -> int:
        return sum(1 for r in self.runs if r.kind == "failed")

    @property
    def ok(self) -> bool:
        return not self.problems


def _local(t: float, fmt: str = "%H:%M") -> str:
    return datetime.fromtimestamp(t, ZoneInfo(TZ)).strftime(fmt)


def format_run(record: RunRecord) -> str:
    head = f"{_local(record.time)}  {record.kind:<6}"
    if record.kind == "failed":
        tail = NS_DOWN if record.state_held else "FAILED and the state moved on"
        return f"{head} {tail:<44} LLU {record.llu_requests}  NS {record.ns_requests}  duplicates {record.duplicates}"
    note = "  (fresh process: python -m tools.run_handler)" if record.fresh_process else ""
    return (
        f"{head} uploaded {record.uploaded:>3}  gap-filled {record.gap_filled:>3}  logins {record.logins}  "
        f"LLU {record.llu_requests}  NS {record.ns_requests}  duplicates {record.duplicates}{note}"
    )


def text_chart(
    points: Sequence[tuple[int, int]],
    *,
    start: float,
    columns: int,
    interval_s: int,
    rows: int = CHART_ROWS,
    marks: dict[int, str] | None = None,
) -> tuple[list[str], list[str]]:
    """Plot rows (top first) and axis lines of (epoch s, mg/dL) points, one column per `interval_s`.

    Column i covers [start + i*interval_s, start + (i+1)*interval_s) and shows the mean of its points.
    """
    buckets: list[list[int]] = [[] for _ in range(columns)]
    for t, mg in points:
        i = int((t - start) // interval_s)
        if 0 <= i < columns:
            buckets[i].append(mg)
    means = [sum(b) / len(b) if b else None for b in buckets]
    present = [m for m in means if m is not None]
    low, high = min(present, default=70.0), max(present, default=180.0)
    step = max(5, math.ceil((high - low) / max(1, rows - 1) / 5) * 5)  # whole mg/dL labels, 5, 10, 15, ...
    slack = step * (rows - 1) - (high - low)
    lo = max(0, math.floor((low - slack / 2) / 5) * 5)
    if lo + step * (rows - 1) < high:
        lo = math.floor(low / 5) * 5
    hi = lo + step * (rows - 1)
    grid = [[" "] * columns for _ in range(rows)]
    for i, m in enumerate(means):
        if m is not None:
            grid[round((hi - m) / step)][i] = "*"
    plot = [f"{hi - r * step:5.0f} |{''.join(grid[r]).rstrip()}" for r in range(rows)]
    axis = ["mg/dL +" + "-" * columns]
    labels = [" "] * (columns + 12)
    hours = [i for i in range(columns) if int(start + i * interval_s) % 3600 == 0] or [0]
    for i in hours:
        labels[7 + i : 12 + i] = list(_local(start + i * interval_s))
    axis.append("".join(labels).rstrip())
    if marks:
        row = [" "] * columns
        for i, ch in marks.items():
            if 0 <= i < columns:
                row[i] = ch
        axis.append("       " + "".join(row).rstrip())
    return plot, axis


def _served_times(stack: LocalStack) -> tuple[dict[int, list[float]], set[int]]:
    """Current readings LibreLink Up served -> virtual times of the polls that served them; history points."""
    current: dict[int, list[float]] = {}
    history: set[int] = set()
    for served in stack.llu.served:
        if served.current_epoch_s is not None:
            current.setdefault(served.current_epoch_s, []).append(served.time)
        history.update(served.history_epoch_s)
    return current, history


def _near(stored: list[int], t: int) -> bool:
    i = bisect.bisect_left(stored, t - GAP_S)
    return i < len(stored) and stored[i] <= t + GAP_S


def run_demo(
    *,
    runs: int = RUNS,
    interval_s: int = INTERVAL_S,
    cold_at: int | None = COLD_AT,
    outage_at: int | None = OUTAGE_AT,
    outage_runs: int = OUTAGE_RUNS,
    chart_rows: int = CHART_ROWS,
    emit: Callable[[str], None] = print,
    moto_endpoint: str | None = None,
) -> DemoSummary:
    """Run the demo; `emit` gets every output line. Starts its own moto server unless given one."""
    if moto_endpoint is None:
        with moto_server() as endpoint:
            return run_demo(
                runs=runs,
                interval_s=interval_s,
                cold_at=cold_at,
                outage_at=outage_at,
                outage_runs=outage_runs,
                chart_rows=chart_rows,
                emit=emit,
                moto_endpoint=endpoint,
            )
    from linkup_sync.errors import LinkupSyncError, NightscoutUnreachable

    began = time.perf_counter()
    outage = range(outage_at, outage_at + outage_runs) if outage_at is not None else range(0)
    if cold_at is not None and cold_at in outage:
        raise ValueError("the cold start must not fall into the Nightscout outage")
    sink = ByteCounter()
    with aws_environment(moto_endpoint), LocalStack(moto_endpoint, log_sink=sink) as stack:
        stack.llu.add_patient(EMAIL, units="mgdl", tz=TZ)
        stack.provision()
        first_run = stack.clock()
        emit(
            f"linkup-sync demo: {runs} scheduled runs, every {interval_s // 60} simulated minutes from "
            f"{_local(first_run, '%Y-%m-%d %H:%M %Z')} ({TZ})"
        )
        emit("LibreLink Up simulator and Nightscout stand-in on 127.0.0.1, moto for DynamoDB and Secrets Manager")
        emit("one follower account, one patient (mg/dL); the real handler functions/sync/app.handler")
        emit("")
        records: list[RunRecord] = []
        for i in range(runs):
            stack.ns.set_unreachable(i in outage)
            ledger_before = stack.stored_ledger()
            llu0, ns0, logins0 = len(stack.llu.requests), stack.ns.count(), stack.llu.logins
            # The first run builds the container's dependencies: a cold start, as in Lambda.
            record = RunRecord(index=i, time=stack.clock(), kind="cold" if i == 0 else "warm")
            try:
                if i == cold_at:
                    record.kind = "cold"
                    record.fresh_process = True
                    result = stack.cold_run()
                    stack.new_container()  # later runs land in the container the cold start created
                else:
                    result = stack.run()
                record.uploaded = int(result["uploaded"])
                record.gap_filled = int(result["gap_filled"])
            except LinkupSyncError as exc:
                record.kind = "failed"
                record.message = exc.message
                record.state_held = isinstance(exc, NightscoutUnreachable) and stack.stored_ledger() == ledger_before
            record.logins = stack.llu.logins - logins0
            record.llu_requests = len(stack.llu.requests) - llu0
            record.ns_requests = stack.ns.count() - ns0
            record.duplicates = len(stack.ns.duplicates())
            records.append(record)
            emit(format_run(record))
            if record.kind == "failed" and (len(records) < 2 or records[-2].kind != "failed"):
                emit(f"               {record.message}")
            stack.tick(interval_s)
        stack.ns.set_unreachable(False)
        return _summarise(
            stack,
            records,
            first_run=first_run,
            interval_s=interval_s,
            chart_rows=chart_rows,
            log_bytes=sink.bytes,
            began=began,
            emit=emit,
        )


def _summarise(
    stack: LocalStack,
    records: list[RunRecord],
    *,
    first_run: float,
    interval_s: int,
    chart_rows: int,
    log_bytes: int,
    began: float,
    emit: Callable[[str], None],
) -> DemoSummary:
    entries = stack.ns.sgv_entries()
    stored = sorted(int(e["date"]) // 1000 for e in entries)
    stored_set = set(stored)
    duplicates = len(stack.ns.duplicates()) + (len(stored) - len(stored_set))
    current, history = _served_times(stack)
    failed_times = {r.time for r in records if r.kind == "failed"}
    # Current readings served by a run that reached Nightscout must be there exactly; those served only
    # while Nightscout was down come back as the history points next to them (within GAP_S).
    exact = {t for t, polls in current.items() if any(p not in failed_times for p in polls)}
    outage_only = set(current) - exact
    missing_current = sorted(t for t in exact if t not in stored_set)
    holes = sorted(t for t in history | outage_only if not _near(stored, t))
    uploaded = sum(r.uploaded for r in records)
    logins = stack.llu.logins
    problems: list[str] = []
    if duplicates:
        problems.append(f"{duplicates} duplicate entries in Nightscout")
    if logins != 1:
        problems.append(f"{logins} logins instead of 1")
    if missing_current:
        problems.append(f"{len(missing_current)} current readings missing from Nightscout")
    if holes:
        problems.append(f"{len(holes)} offered readings with no Nightscout entry within {GAP_S} s")
    if uploaded != len(stored):
        problems.append(f"the runs reported {uploaded} uploads but Nightscout holds {len(stored)} entries")
    if any(not r.state_held for r in records):
        problems.append("a failed run changed the upload state")

    window_start = first_run - interval_s  # run i shows the reading taken just before it
    marks = {r.index: ("c" if r.fresh_process else "~") for r in records if r.fresh_process or r.kind == "failed"}
    chart, axis = text_chart(
        [(int(e["date"]) // 1000, int(e["sgv"])) for e in entries],
        start=window_start,
        columns=len(records),
        interval_s=interval_s,
        rows=chart_rows,
        marks=marks,
    )
    summary = DemoSummary(
        runs=records,
        readings_in_nightscout=len(stored),
        duplicates=duplicates,
        logins=logins,
        uploaded=uploaded,
        offered_current=len(current),
        offered_history=len(history),
        missing_current=missing_current,
        history_holes=holes,
        outage_current_covered=len(outage_only),
        chart=chart,
        chart_axis=axis,
        log_bytes=log_bytes,
        wall_s=time.perf_counter() - began,
        problems=problems,
    )
    ok = "yes" if not (missing_current or holes) else "NO"
    history_found = len(history) - sum(1 for h in holes if h in history)
    outage_found = len(outage_only) - sum(1 for h in holes if h in outage_only)
    cold = sum(1 for r in records if r.fresh_process)
    emit("")
    emit(f"runs: {len(records)} ({cold} in a fresh process, {summary.failed_runs} while Nightscout was down)")
    emit(
        f"readings in Nightscout: {len(stored)} (the first run back-filled {records[0].gap_filled} "
        "from the 12-hour history)"
    )
    emit(f"duplicates: {duplicates}")
    emit(f"logins: {logins}")
    emit(
        f"every reading LibreLink Up offered is in Nightscout: {ok} — {len(exact) - len(missing_current)} of "
        f"{len(exact)} current readings exactly, {history_found} of {len(history)} history points within "
        f"{GAP_S} s"
        + (
            f", {outage_found} of the {len(outage_only)} current readings offered during the outage through "
            "the history points next to them"
            if outage_only
            else ""
        )
    )
    emit(f"wall time: {summary.wall_s:.1f} s (handler logs and metrics captured: {log_bytes / 1024:.0f} KB)")
    emit("")
    emit(
        f"Glucose in the Nightscout stand-in, {_local(first_run)}–{_local(records[-1].time)} {TZ} "
        f"(one column per {interval_s // 60} minutes; c = cold start, ~ = Nightscout down):"
    )
    for line in chart + axis:
        emit(line)
    for problem in problems:
        emit(f"PROBLEM: {problem}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--interval", type=int, default=INTERVAL_S, help="seconds of virtual time between runs")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="where the output and totals are kept")
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite the documentation's blocks (e.g. with another --output)"
    )
    args = parser.parse_args(argv)
    runs = max(args.runs, 2)
    cold_at = runs // 2
    # after the cold start; then 25 minutes of runs, since LibreLink Up's history lags the current reading
    outage_runs = min(OUTAGE_RUNS, max(0, runs - cold_at - 1 - RUNS_AFTER_OUTAGE))
    outage_at = min(max(runs * 2 // 3, cold_at + 1), runs - outage_runs - RUNS_AFTER_OUTAGE)
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    summary = run_demo(
        runs=runs,
        interval_s=args.interval,
        cold_at=cold_at,
        outage_at=outage_at if outage_runs else None,
        outage_runs=outage_runs,
        emit=emit,
    )
    if not summary.ok:  # a demo that lost or doubled a reading is a bug to fix, never a figure to publish
        print("the demo failed: docs/results/demo.json and the documentation are left as they were", file=sys.stderr)
        return 1
    given = sys.argv[1:] if argv is None else argv
    command = "make demo" if not given else "python -m tools.demo " + " ".join(given)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"command": command, "lines": lines, "summary": results(summary)}, indent=1) + "\n"
    )
    if not args.no_docs:
        from tools.docs_figures import rewrite_docs

        rewrite_docs()
    return 0


def results(summary: DemoSummary) -> dict[str, object]:
    """The totals the documentation quotes, as `make demo` counted them."""
    return {
        "ok": summary.ok,
        "runs": len(summary.runs),
        "failed_runs": summary.failed_runs,
        "readings_in_nightscout": summary.readings_in_nightscout,
        "uploaded": summary.uploaded,
        "duplicates": summary.duplicates,
        "logins": summary.logins,
        "missing": len(summary.missing_current) + len(summary.history_holes),
        "first_run": {
            "linkup_requests": summary.runs[0].llu_requests,
            "nightscout_requests": summary.runs[0].ns_requests,
            "gap_filled": summary.runs[0].gap_filled,
        },
        "wall_s": round(summary.wall_s, 1),
    }


if __name__ == "__main__":
    raise SystemExit(main())
