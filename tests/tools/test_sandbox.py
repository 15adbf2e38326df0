"""`make sandbox` (issue 13): started as a person would, its exports used from "a second terminal",
then stopped with Ctrl-C (SIGINT), after which its ports are free again."""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from tools.sandbox import READY_LINE

from tests.support.processes import run_python

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 180  # generous: moto and the simulators start in seconds, but the machine may be busy


def _read_until_ready(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> list[str]:

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while True:
        line = lines.get(timeout=STARTUP_S)
        if line is None:
            raise AssertionError("the sandbox ended before it was ready:\n" + "\n".join(seen))
        seen.append(line)
        if line.startswith(READY_LINE):
            return seen


def _exports(lines: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines:
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            found[name] = shlex.split(value)[0] if value else ""
    return found


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_make_sandbox_serves_doctor_sync_and_the_handler_then_ctrl_c_frees_the_ports(tmp_path: Path) -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LINK_UP_", "NIGHTSCOUT_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.sandbox"],
        cwd=ROOT,
        env={**base_env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: queue.Queue[str | None] = queue.Queue()
    try:
        lines = _read_until_ready(proc, output)
        env = _exports(lines)
        for name in (
            "LINK_UP_USERNAME",
            "LINK_UP_PASSWORD",
            "LINK_UP_API_URL",
            "NIGHTSCOUT_URL",
            "NIGHTSCOUT_API_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "STATE_TABLE_NAME",
            "CREDENTIALS_SECRET_ID",
            "AWS_DEFAULT_REGION",  # issue 23, finding 7: the AWS CLI v1 needs it
            "HOSTED_STATE_TABLE_NAME",
            "HOSTED_KEY_ID",
        ):
            assert env.get(name), f"{name} is not exported"
        text = "\n".join(lines)
        for command in ("doctor", "sync --once --dry-run", "sync --once", "--secret-id", "-m tools.run_handler"):
            assert command in text
        # "the second terminal": the printed variables and nothing else from AWS
        second = {**base_env, **env, "PYTHONPATH": str(ROOT)}
        state = env["LINKUP_SANDBOX_STATE"]

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return run_python("-m", "linkup_sync_cli", *args, env=second, cwd=tmp_path)

        doctor = cli("doctor", "--state", state)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "All " in doctor.stdout and "checks passed" in doctor.stdout
        dry = cli("sync", "--once", "--dry-run", "--state", state)
        assert dry.returncode == 0 and "would upload" in dry.stdout, dry.stdout + dry.stderr
        real = cli("sync", "--once", "--state", state)
        assert real.returncode == 0 and real.stdout.startswith("uploaded "), real.stdout + real.stderr
        aws = cli("sync", "--once", "--secret-id", env["CREDENTIALS_SECRET_ID"], "--table", env["STATE_TABLE_NAME"])
        assert aws.returncode == 0, aws.stdout + aws.stderr
        handler = run_python("-m", "tools.run_handler", env=second, cwd=ROOT)
        assert handler.returncode == 0, handler.stdout + handler.stderr
        result = json.loads([ln for ln in handler.stdout.splitlines() if ln.startswith('{"result"')][-1])["result"]
        assert result["logins"] == 0  # the function's table already holds the login the --table run made
        assert "unexpected failure" not in handler.stdout + handler.stderr

        # issue 23, finding 7: the hosted operator's commands, with the printed --table and --key-id
        assert "accounts add --table" in text and "--key-id" in text
        account = Path(env["LINKUP_SANDBOX_ACCOUNT"]).read_text(encoding="utf-8")
        hosted = ["--table", env["HOSTED_STATE_TABLE_NAME"]]
        added = run_python(
            "-m", "linkup_sync_cli", "accounts", "add", *hosted, "--key-id", env["HOSTED_KEY_ID"],
            env=second, cwd=tmp_path, input=account,
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
        listed = cli("accounts", "list", *hosted)
        assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) >= 1, listed.stdout + listed.stderr

        ports = [urlsplit(env[n].replace("{region}", "eu")).port for n in ("LINK_UP_API_URL", "NIGHTSCOUT_URL")]
        ports.append(urlsplit(env["AWS_ENDPOINT_URL"]).port)
        assert all(p is not None and not _free(p) for p in ports)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    rest = []
    while (line := output.get(timeout=60)) is not None:
        rest.append(line)
    assert proc.returncode == 0, rest
    assert any(line.startswith("sandbox stopped") for line in rest), rest
    assert all(_free(p) for p in ports if p is not None)
    assert not Path(state).exists()  # its state file went with it
