"""Running a program of this repository as a person would, and keeping what it printed."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def run_python(
    *args: str, env: Mapping[str, str], cwd: Path | str, timeout: float = 180, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python <args>` with this interpreter; the exit code is the caller's to check (check=False)."""
    return subprocess.run(
        [sys.executable, *args],
        input=input,
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    max_rss_mb: float  # the child's peak resident memory (VmHWM), as the kernel counted it
    seconds: float  # from start to exit, interpreter start and imports included


# Runs a module as `python -m` would, then writes the process's peak resident memory (VmHWM, kB) to the
# file named first. Read in the child itself: wait4's ru_maxrss of a child also counts the memory of the
# forked copy of the parent (here the test process) from before its exec.
_MEASURED = """
import atexit, runpy, sys
target = sys.argv[1]
def peak():
    with open('/proc/self/status') as status:
        found = [line.split()[1] for line in status if line.startswith('VmHWM:')]
    with open(target, 'w') as out:
        out.write(found[0] if found else '')
atexit.register(peak)
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
"""


def run_measured(module: str, *args: str, env: Mapping[str, str], cwd: Path | str, timeout: float = 180) -> Measured:
    """`python -m <module> <args>` in its own process, with its peak memory and its time."""
    with tempfile.TemporaryDirectory() as folder:
        peak = Path(folder) / "vmhwm"
        started = time.monotonic()
        done = run_python("-c", _MEASURED, str(peak), module, *args, env=env, cwd=cwd, timeout=timeout)
        seconds = time.monotonic() - started
        kilobytes = peak.read_text().strip() if peak.exists() else ""
    assert kilobytes, f"the process reported no peak memory (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return Measured(done.returncode, done.stdout, done.stderr, int(kilobytes) / 1024, seconds)
