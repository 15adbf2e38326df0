"""The Markdown report of `make scale` (tools/scale.py): what was measured, what was modelled, the bill."""

from __future__ import annotations

from typing import Any

from tools.scale import GOAL_PER_ACCOUNT, HOURS_PER_MONTH, PRICE_KMS_KEY_MONTH, PRICE_SQS_REQUEST


def _usd(value: float) -> str:
    if value >= 0.01:
        return f"${value:,.2f}"
    return f"${value:.5f}" if value > 0 else "$0"


def report(results: dict[str, Any]) -> str:
    hour, warm, d, a = results["hour"], results["warmup"], results["defaults"], results["assumptions"]
    cost, accounts = results["cost"], results["accounts"]
    llu = hour["linkup_rate"]
    runs = sum(hour["runs"].values())
    per_account = hour["runs_per_account"]
    expected = results["minutes"] // results["interval_minutes"]
    poller = hour["poller"]
    ratio_ok = llu["peak"] <= 1.5 * llu["mean"]
    lines = [
        f"## make scale: {accounts:,} accounts, {results['interval_minutes']}-minute schedule, "
        f"{results['minutes']} measured minutes",
        "",
        f"In-process moto (DynamoDB, SQS, KMS), LibreLink Up simulator and one Nightscout site per account on "
        f"127.0.0.1, one virtual clock; the accounts in {results['shards']} shard process(es), each a whole hosted "
        f"stack, Lambda's containers modelled across all. Stack settings from {d['source']}: worker "
        f"{d['memory_mb']} MB arm64, BatchSize {d['batch_size']}, MaximumConcurrency {d['max_concurrency']}.",
        "",
        f"Warm-up, not in the figures below: one {results['interval_minutes']}-minute interval with every account's "
        f"first run ({sum(warm['runs'].values()):,} runs: {warm['logins']:,} LibreLink Up logins, "
        f"{warm['linkup_requests']:,} LibreLink Up requests, the 12-hour back-fill), {warm['invocations']:,} "
        f"invocations, {warm['cold_starts']} new containers, {warm['kms_decrypt']:,} KMS Decrypt; adding the "
        f"accounts made {warm['setup_kms_encrypt']:,} KMS Encrypt.",
        "",
        "| The measured hour (steady state) | |",
        "|---|---|",
        f"| Runs | {runs:,} ({', '.join(f'{k} {v:,}' for k, v in sorted(hour['runs'].items()))}); runs per "
        f"account {min(per_account, default=0)}–{max(per_account, default=0)} (expected {expected})"
        + "".join(f"; {why} {n:,}" for why, n in sorted(hour["not_ran"].items()))
        + " |",
        f"| LibreLink Up requests per second | mean {llu['mean']:.1f}, peak {llu['peak']:.0f} "
        f"(peak / mean {llu['peak_to_mean']:.2f}: {'≤' if ratio_ok else '>'} 1.5) |",
        f"| LibreLink Up requests / logins | {hour['linkup_requests']:,} / {hour['logins']:,} |",
        f"| Nightscout requests | {hour['nightscout_requests']:,} |",
        f"| Worker invocations | {hour['invocations']:,} ({hour['messages'] / max(1, hour['invocations']):.1f} "
        f"messages each); containers {results['containers']} ({hour['cold_starts']} new this hour); batches that "
        f"waited for a container {results['deferred_batches']} |",
        f"| Worker duration (modelled) | {hour['billed_ms'] / max(1, hour['invocations']):,.0f} ms per invocation, "
        f"{hour['gb_s']:,.0f} GB-seconds |",
        f"| DynamoDB request units | {cost['basis']['read_units_hour']:,.0f} read, "
        f"{cost['basis']['write_units_hour']:,.0f} write |",
        f"| SQS requests | {cost['basis']['sqs_requests_hour']:,.0f}: SendMessageBatch "
        f"{hour['send_message_batch']:,}, ReceiveMessage {poller['receive']:,}, DeleteMessageBatch "
        f"{poller['delete_batch']:,}, empty long polls {poller['empty_polls']:,.0f} |",
        f"| KMS Decrypt | {hour['kms_decrypt']:,} |",
        f"| Log output | worker {hour['log_bytes'] / max(1, runs):,.0f} bytes per run + "
        f"{a['platform_log_bytes']} per invocation (Lambda's JSON platform lines) |",
        "",
        "| DynamoDB, measured hour | Calls | Read units | Write units | Units per call |",
        "|---|---|---|---|---|",
    ]
    for name, v in results["dynamodb"]["hour"].items():
        units = (v["read_units"] + v["write_units"]) / max(1, v["calls"])
        lines.append(f"| {name} | {v['calls']:,} | {v['read_units']:,.1f} | {v['write_units']:,.0f} | {units:.2f} |")
    rows = [
        ("Worker Lambda requests", cost["variable"]["worker_requests"]),
        (f"Worker Lambda compute ({d['memory_mb']} MB arm64, modelled duration)", cost["variable"]["worker_compute"]),
        ("DynamoDB read request units", cost["variable"]["dynamodb_reads"]),
        ("DynamoDB write request units", cost["variable"]["dynamodb_writes"]),
        (
            f"DynamoDB storage + PITR ({results['stored']['bytes'] / 2**20:,.1f} MB in {results['stored']['items']:,}"
            " items)",
            cost["variable"]["dynamodb_storage"],
        ),
        (f"SQS requests (${PRICE_SQS_REQUEST * 1e6:.2f} per million)", cost["variable"]["sqs"]),
        ("KMS Decrypt", cost["variable"]["kms_decrypt"]),
        ("CloudWatch Logs ingestion (worker)", cost["variable"]["logs_ingestion"]),
        (f"CloudWatch Logs storage ({d['retention_days']} days kept)", cost["variable"]["logs_storage"]),
        (f"Fixed: KMS key ({d['kms_keys']} × ${PRICE_KMS_KEY_MONTH:.2f})", cost["fixed"]["kms_key"]),
        (f"Fixed: alarms ({d['alarms']} alarms, {d['alarm_metrics']} metrics)", cost["fixed"]["alarms"]),
        (
            f"Fixed: custom metrics ({', '.join(m.split('[')[0] for m in results['metrics'])})",
            cost["fixed"]["custom_metrics"],
        ),
        ("Fixed: EventBridge Scheduler (every minute)", cost["fixed"]["scheduler"]),
        (f"Fixed: dispatcher Lambda ({cost['basis']['dispatch_ms']} ms modelled)", cost["fixed"]["dispatcher_lambda"]),
        ("Fixed: dispatcher logs", cost["fixed"]["dispatcher_logs"]),
        ("Fixed: SNS topic (free; a few alarm e-mails)", cost["fixed"]["sns_topic"]),
    ]
    lines += [
        "",
        f"Monthly cost: the measured hour × {HOURS_PER_MONTH}, us-east-1 list prices (tools/bench.py), free tier "
        "ignored:",
        "",
        f"| Item | Per month, {accounts:,} accounts | Per account |",
        "|---|---|---|",
        *[f"| {label} | {_usd(value)} | {_usd(value / accounts)} |" for label, value in rows],
        f"| … of which fixed | {_usd(sum(cost['fixed'].values()))} | {_usd(cost['fixed_per_account'])} |",
        f"| **Total** | **{_usd(cost['total'])}** | **{_usd(cost['per_account'])}** |",
        "",
        f"goal ≤ ${GOAL_PER_ACCOUNT:.2f}/account: {'met' if cost['goal_met'] else 'not met'} "
        f"({_usd(cost['per_account'])} per account a month)",
    ]
    personal = results["personal"]
    if personal.get("usd") is not None:
        lines.append(
            f"The personal stack (template.yaml) for one person: ${personal['usd']:.2f} a month at the 5-minute "
            f"schedule ({personal['source']})."
        )
    lat = ", ".join(f"{k} {v} ms" for k, v in a["latency_ms"].items())
    lines += [
        "",
        f"Modelled, not measured: a run's duration in AWS is its requests one after the other ({lat} per request); "
        f"an invocation lasts as long as its slowest run + {a['handler_ms']} ms, + {a['init_ms']} ms INIT in a new "
        "container, billed per 1 ms. A batch goes to the warm container free longest, else a new one while fewer than "
        "MaximumConcurrency are busy. Lambda's poller: one ReceiveMessage and one DeleteMessageBatch per batch, "
        f"{a['pollers']} pollers long-polling {a['long_poll_s']} s in every second the queue had nothing visible "
        f"({hour['idle_seconds']} such seconds). The dispatcher: {a['aws_call_ms']} ms per AWS call, one Query per "
        "interval and the SendMessageBatch calls eight at a time.",
    ]
    return "\n".join(lines)
