"""`make scale` (tools/scale.py), small: its figures are the measured counts, and the cost comes from them."""

from __future__ import annotations

import math
from typing import Any

import pytest
from tools.bench import (
    LAMBDA_PLATFORM_LOG_BYTES,
    PRICE_DDB_READ_UNIT,
    PRICE_DDB_WRITE_UNIT,
    PRICE_KMS_REQUEST,
    PRICE_LAMBDA_GB_S_ARM,
    PRICE_LAMBDA_REQUEST,
    PRICE_LOGS_GB,
)
from tools.dynamodb_units import label, read_units, write_units
from tools.scale import (
    HOURS_PER_MONTH,
    PRICE_SQS_REQUEST,
    Containers,
    ScaleOptions,
    monthly_cost,
    run_scale,
)
from tools.scale_report import report

ACCOUNTS = 50
MINUTES = 15


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    return run_scale(ScaleOptions(accounts=ACCOUNTS, minutes=MINUTES, shards=1, progress=lambda _: None))


def test_every_account_runs_once_per_interval_and_logs_in_only_in_the_warm_up(small: dict[str, Any]) -> None:
    hour, warm = small["hour"], small["warmup"]
    assert warm["runs"] == {"ran": ACCOUNTS} and warm["logins"] == ACCOUNTS
    assert hour["runs"] == {"ran": ACCOUNTS * MINUTES // 5} and hour["not_ran"] == warm["not_ran"] == {}
    assert hour["runs_per_account"] == {MINUTES // 5: ACCOUNTS}  # every account, each of its runs
    assert hour["logins"] == 0
    # a steady-state run asks LibreLink Up for the graph once and uploads once
    assert hour["linkup_requests"] == hour["nightscout_requests"] == ACCOUNTS * MINUTES // 5
    assert warm["linkup_requests"] == 3 * ACCOUNTS  # login, connections, graph
    assert warm["setup_kms_encrypt"] == ACCOUNTS


def test_the_request_rate_is_mean_and_peak_of_the_simulators_log(small: dict[str, Any]) -> None:
    hour = small["hour"]
    per_second = hour["linkup_per_second"]
    assert len(per_second) == MINUTES * 60 and sum(per_second) == hour["linkup_requests"]
    assert hour["linkup_rate"]["mean"] == pytest.approx(sum(per_second) / (MINUTES * 60))
    assert hour["linkup_rate"]["peak"] == max(per_second)
    assert hour["linkup_rate"]["peak_to_mean"] == pytest.approx(max(per_second) / hour["linkup_rate"]["mean"])


def test_dynamodb_units_are_metered_per_operation(small: dict[str, Any]) -> None:
    ddb, runs = small["dynamodb"]["hour"], ACCOUNTS * MINUTES // 5
    assert ddb["worker: claim (registry UpdateItem)"]["calls"] == runs
    assert ddb["worker: state load (Query)"]["calls"] == runs
    assert 0 < ddb["worker: upload record (target UpdateItem)"]["calls"] <= runs
    assert ddb["dispatcher: due lists (Query)"]["calls"] == 12 * MINUTES  # one per interval and minute
    for name, used in ddb.items():
        assert used["read_units"] + used["write_units"] > 0, name
    # the strongly consistent state load reads whole 4 KB units, the claim writes whole 1 KB units
    assert ddb["worker: state load (Query)"]["read_units"] >= runs
    assert ddb["worker: claim (registry UpdateItem)"]["write_units"] >= runs
    assert small["stored"]["bytes"] > 0 and small["stored"]["items"] >= 4 * ACCOUNTS


def test_invocations_kms_and_sqs_come_from_the_batches(small: dict[str, Any]) -> None:
    hour, warm = small["hour"], small["warmup"]
    assert hour["messages"] == ACCOUNTS * MINUTES // 5
    assert math.ceil(hour["messages"] / 10) <= hour["invocations"] <= hour["messages"]
    assert warm["cold_starts"] >= 1 and small["containers"] <= small["defaults"]["max_concurrency"]
    assert warm["kms_decrypt"] == ACCOUNTS  # each account's first run decrypts; the cache holds it an hour
    assert hour["kms_decrypt"] <= ACCOUNTS * small["containers"]
    # ten messages per SendMessageBatch, each minute's due accounts on their own
    assert math.ceil(hour["messages"] / 10) <= hour["send_message_batch"] <= hour["messages"]
    assert hour["poller"]["receive"] == hour["poller"]["delete_batch"] == hour["invocations"]
    assert hour["poller"]["empty_polls"] == hour["idle_seconds"] * 5 / 20
    assert hour["gb_s"] == pytest.approx(hour["billed_ms"] / 1000 * small["defaults"]["memory_mb"] / 1024)
    assert hour["log_bytes"] > 0 and any(m.startswith("AccountRuns[") for m in small["metrics"])


def test_the_cost_is_the_measured_counts_at_the_list_prices(small: dict[str, Any]) -> None:
    cost, hour, month = small["cost"], small["hour"], HOURS_PER_MONTH
    variable = cost["variable"]
    assert variable["worker_requests"] == pytest.approx(hour["invocations"] * month * PRICE_LAMBDA_REQUEST)
    assert variable["worker_compute"] == pytest.approx(hour["gb_s"] * month * PRICE_LAMBDA_GB_S_ARM)
    ddb = small["dynamodb"]["hour"].values()
    assert variable["dynamodb_reads"] == pytest.approx(sum(u["read_units"] for u in ddb) * month * PRICE_DDB_READ_UNIT)
    assert variable["dynamodb_writes"] == pytest.approx(
        sum(u["write_units"] for u in ddb) * month * PRICE_DDB_WRITE_UNIT
    )
    assert variable["kms_decrypt"] == pytest.approx(hour["kms_decrypt"] * month * PRICE_KMS_REQUEST)
    poller = hour["poller"]
    sqs = hour["send_message_batch"] + poller["receive"] + poller["delete_batch"] + poller["empty_polls"]
    assert variable["sqs"] == pytest.approx(sqs * month * PRICE_SQS_REQUEST)
    logged = (hour["log_bytes"] + hour["invocations"] * LAMBDA_PLATFORM_LOG_BYTES) * month / 2**30
    assert variable["logs_ingestion"] == pytest.approx(logged * PRICE_LOGS_GB)
    total = sum(variable.values()) + sum(cost["fixed"].values())
    assert cost["total"] == pytest.approx(total)
    assert cost["per_account"] == pytest.approx(total / ACCOUNTS)
    assert cost["goal_met"] == (cost["per_account"] <= 0.05)
    assert monthly_cost(small) == cost  # a pure function of the measured figures
    text = report(small)
    assert f"goal ≤ $0.05/account: {'met' if cost['goal_met'] else 'not met'}" in text
    assert "Warm-up, not in the figures below" in text


def test_shards_in_processes_share_out_the_accounts_and_add_up() -> None:
    accounts = 12
    results = run_scale(ScaleOptions(accounts=accounts, minutes=5, shards=2, progress=lambda _: None))
    hour = results["hour"]
    assert results["shards"] == 2
    assert hour["runs"] == {"ran": accounts} and hour["runs_per_account"] == {1: accounts}
    assert results["warmup"]["logins"] == accounts and hour["logins"] == 0
    # one dispatcher's reads: one Query per interval and minute, whatever the number of shards
    assert results["dynamodb"]["hour"]["dispatcher: due lists (Query)"]["calls"] == 12 * 5


def test_a_batch_goes_to_the_warm_container_free_longest_else_a_new_one_up_to_the_maximum() -> None:
    pool = Containers(maximum=3)
    assert pool.allot(0, [2]) == [[(0, True), (1, True)]]
    pool.busy_until[0], pool.busy_until[1] = 0.4, 0.2
    # both free at second 1; container 1 has been free longer
    assert pool.allot(1, [1, 1]) == [[(1, False)], [(0, False)]]
    pool.busy_until[0] = pool.busy_until[1] = 5.0
    assert pool.allot(2, [2]) == [[(2, True)]]  # the third and last; the other batch waits
    assert pool.deferred == 1


def test_dynamodb_unit_rules() -> None:
    assert read_units(0, consistent=True) == 1 and read_units(4096, consistent=True) == 1
    assert read_units(4097, consistent=True) == 2 and read_units(4097, consistent=False) == 1
    assert read_units(10, consistent=False) == 0.5
    assert write_units(1) == 1 and write_units(1024) == 1 and write_units(1025) == 2
    assert label("Query", {"pk": {"S": "due#5#3"}}).startswith("dispatcher")
    assert label("UpdateItem", {"pk": {"S": "acct#ab"}, "sk": {"S": "target#x"}}).startswith("worker: upload")
    assert label("Query", {"pk": {"S": "incidents#ab"}}) == "worker: incidents (Query)"
