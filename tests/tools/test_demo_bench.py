"""The demo and bench tools: their core functions, small and fast, against the simulators and moto."""

from __future__ import annotations

import io

from tools.bench import (
    dynamodb_item_size,
    emf_metrics,
    measure_requests,
    monthly_cost,
    package_sizes,
    parse_importtime,
    run_child,
)
from tools.demo import run_demo, text_chart
from tools.local_stack import EMAIL, LocalStack, aws_environment, moto_server


def test_demo_with_a_cold_start_and_an_outage_is_clean() -> None:
    lines: list[str] = []
    summary = run_demo(runs=16, cold_at=6, outage_at=8, outage_runs=2, chart_rows=8, emit=lines.append)
    assert summary.ok, summary.problems
    assert summary.duplicates == 0
    assert summary.logins == 1
    assert summary.uploaded > 0 and summary.uploaded == summary.readings_in_nightscout
    assert [r.fresh_process for r in summary.runs].count(True) == 1
    # issue 13: the first run builds the container, so it is a cold start, and says so
    first_run_line = next(line for line in lines if "uploaded" in line)
    assert summary.runs[0].kind == "cold" and first_run_line.split()[1] == "cold"
    assert [r.index for r in summary.runs if r.kind == "cold"] == [0, 6]
    assert summary.failed_runs == 2 and all(r.state_held for r in summary.runs)
    assert len(summary.chart) == 8
    assert sum(1 for line in lines if "NS down — nothing lost, state held" in line) == 2
    assert any(line == "duplicates: 0" for line in lines) and any(line == "logins: 1" for line in lines)
    run_lines = [line for line in lines if " LLU " in line]
    assert len(run_lines) == 16 and all(line.split("duplicates ")[1].startswith("0") for line in run_lines)


def test_bench_counts_requests_of_a_steady_state_run() -> None:
    captured = io.StringIO()
    with moto_server() as endpoint, aws_environment(endpoint), LocalStack(endpoint, log_sink=captured) as stack:
        stack.llu.add_patient(EMAIL)
        stack.provision()
        first = stack.run()
        assert first["logins"] == 1
        counts = measure_requests(stack, warm_runs=2)
        child = run_child(stack, runs=2)  # the measuring process of the cold-start and warm-run figures
    warm, new = counts["warm"], counts["new_container"]
    assert warm["linkup"] == 1 and warm["nightscout"] <= 1 and warm["aws"] <= 3
    # a new container also reads the incidents once (then hourly while none is open)
    assert new["linkup"] == 1 and new["nightscout"] <= 1 and new["aws"] <= 4
    assert 1 <= warm["uploaded"] <= 2  # the first runs also fill in history points as they arrive
    cold, again = child.records
    assert cold["linkup_requests"] == 1 and cold["result"]["logins"] == 0 and len(cold["aws_calls"]) <= 4
    assert again["linkup_requests"] == 1 and len(again["aws_calls"]) <= len(cold["aws_calls"])
    assert cold["import_s"] > 0 and cold["init_s"] >= cold["import_s"] and cold["peak_rss_kb"] > 0
    assert emf_metrics(captured.getvalue()) == ["LeastReadingsUploaded[service]"]  # the one custom metric


def test_package_sizes_leave_out_caches() -> None:
    sizes = package_sizes()
    assert sizes["function"]["zip_bytes"] > 0 and sizes["layer"]["zip_bytes"] > 0
    assert sizes["layer"]["files"] > sizes["function"]["files"] >= 1


def test_importtime_is_summed_per_top_level_package() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       300 |        300 |     botocore.utils\n"
        "import time:       200 |        500 |   botocore\n"
        "import time:       100 |        100 | json\n"
    )
    report = parse_importtime(stderr)
    assert report["modules"] == 3 and report["total_ms"] == 0.6
    assert [p["package"] for p in report["top"]] == ["botocore", "json"]
    assert report["top"][0]["ms"] == 0.5


def test_monthly_cost_adds_up() -> None:
    cost = monthly_cost(
        runs=8640,
        billed_ms=100,
        memory_mb=256,
        read_units=1,
        write_units=1,
        secret_calls=1,
        log_bytes=1000,
        custom_metrics=0,
    )
    assert round(cost["lambda_compute"], 6) == round(8640 * 0.1 * 0.25 * 0.0000133334, 6)
    assert round(cost["secrets_manager"], 4) == round(0.40 + 8640 * 0.05 / 10_000, 4)
    assert round(cost["scheduler"], 6) == round(8640 / 1_000_000, 6)  # no free tier taken off
    assert abs(cost["total"] - sum(v for k, v in cost.items() if k != "total")) < 1e-12


def test_item_size_and_chart_helpers() -> None:
    assert dynamodb_item_size({"pk": {"S": "abc"}, "uploaded": {"B": b"\x00" * 8}}) == 2 + 3 + 8 + 8
    plot, axis = text_chart([(0, 100), (300, 150), (600, 200)], start=0, columns=3, interval_s=300, rows=5)
    assert len(plot) == 5 and plot[0].endswith("*") and plot[-1].endswith("|*")
    assert axis[0].startswith("mg/dL +---")


def test_the_monthly_bill_of_the_default_stack_stays_under_the_targets() -> None:
    """Issue #15: at most 1.00 USD a month at the 5-minute schedule and 1.50 at 1 minute, free tier ignored,
    counted from what the template deploys (alarms, dashboards) with generous per-run figures."""
    from tools.bench import RUNS_PER_MONTH, SCHEDULE_S, SECRET_MAX_AGE_S, template_billing

    billing = template_billing()
    assert billing == {"alarms": 2, "dashboards": 0, "retention_days": 30}  # the dashboard is opt-in
    writes = {"5 minutes": 2, "1 minute": 4}  # the 1-minute ledger is ~3 KB: 3-4 write units
    for label, limit in (("5 minutes", 1.00), ("1 minute", 1.50)):
        cost = monthly_cost(
            runs=RUNS_PER_MONTH[label],
            billed_ms=300,
            memory_mb=256,
            read_units=1,
            write_units=writes[label],
            secret_calls=SCHEDULE_S[label] / SECRET_MAX_AGE_S,
            log_bytes=2000,
            custom_metrics=1,
            stored_bytes=10_000,
            **billing,
        )
        assert cost["total"] <= limit, (label, cost)
        assert cost["cloudwatch_alarms"] == 0.20 and cost["cloudwatch_dashboards"] == 0
