"""`make bench`'s import figures: a generated 90-day Libre 3 LibreView export (about 26,000 historic rows)
imported with `linkup-sync import-csv` into the Nightscout stand-in (API v1), then imported again.

The command runs as a person runs it, in a process of its own (the stand-in stays in this one), so its
wall time and its peak memory (VmHWM, its resident high-water mark) are the command's alone. A 30-day export is imported
too: flat memory means the 90-day import's peak is about the 30-day one's.

    python -m tools.bench_import [--days 90]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.libreview_exports import libre3_days, write_export_file
from tools.simulators.clock import VirtualClock
from tools.simulators.nightscout import NightscoutStandIn

ROOT = Path(__file__).resolve().parents[1]
SECRET = "test-secret-123456"
END = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
SOURCE_PATH = os.pathsep.join(str(ROOT / d) for d in ("layers/linkup_sync/python", "cli"))


# The console script's main, then the process's own memory peak. Not ru_maxrss: Linux carries the peak of
# the process before exec over (here the forked copy of this one, which holds the stand-in's entries).
_CHILD = """
import sys
from linkup_sync_cli.main import main
code = main(sys.argv[1:])
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("VmHWM_kB", peak[0] if peak else "0")
sys.exit(code)
"""


def _import(path: Path, ns: NightscoutStandIn, timeout_s: float) -> dict[str, Any]:
    """One `linkup-sync import-csv` in a child process: seconds, max RSS (MB), exit status, its output."""
    env = {
        **os.environ,
        "PYTHONPATH": SOURCE_PATH,
        "NIGHTSCOUT_URL": ns.base_url,
        "NIGHTSCOUT_API_TOKEN": SECRET,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [sys.executable, "-c", _CHILD, "import-csv", str(path), "--timezone", "Europe/Berlin"]
    # The generator writes MM-DD-YYYY; said here, since a short export in the first days of a month cannot show it.
    command += ["--date-format", "MM-DD-YYYY", "--now", str(END.timestamp() + 3600)]
    posts0, gets0 = ns.count(method="POST"), ns.count(method="GET")
    here = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = started + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    peak_kb = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmHWM_kB ")), 0)
    return {
        "seconds": round(seconds, 2),  # wall time: on a busy shared machine far above the CPU times
        "cpu_s_command": round(usage.ru_utime + usage.ru_stime, 2),
        "cpu_s_standin": round(after.ru_utime + after.ru_stime - here.ru_utime - here.ru_stime, 2),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "max_rss_mb": round(peak_kb / 1024, 1),
        "exit": proc.returncode,
        "posts": ns.count(method="POST") - posts0,
        "gets": ns.count(method="GET") - gets0,
        "summary": [line for line in text.splitlines() if line.startswith(("imported", "already there"))],
    }


def measure_import(days: int = 90, *, compare_days: int = 30, timeout_s: float = 600) -> dict[str, Any]:
    """The figures of importing a `days`-day Libre 3 export twice, and a `compare_days` one once."""
    results: dict[str, Any] = {"days": days}
    with tempfile.TemporaryDirectory() as folder:
        for label, span in (("compare", compare_days), ("first", days)):
            path = Path(folder) / f"export-{span}.csv"
            truth = write_export_file(path, libre3_days(span, end_utc=END))
            ns = NightscoutStandIn(VirtualClock(END.timestamp() + 3600)).start()
            try:
                run = _import(path, ns, timeout_s)
                run["historic_rows"] = len(truth)
                run["file_mb"] = round(path.stat().st_size / 1e6, 2)
                run["stored"] = len(ns.sgv_entries())
                results[label if label == "first" else f"import_{span}_days"] = run
                if label == "first":
                    results["second"] = _import(path, ns, timeout_s)  # the same file again: nothing to store
                    results["stored_after_second"] = len(ns.sgv_entries())
            finally:
                ns.stop()
    first = results["first"]
    results["readings_per_second"] = round(first["stored"] / first["seconds"]) if first["seconds"] else None
    results["rss_growth_mb"] = round(first["max_rss_mb"] - results[f"import_{compare_days}_days"]["max_rss_mb"], 1)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args(argv)
    print(json.dumps(measure_import(args.days), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
