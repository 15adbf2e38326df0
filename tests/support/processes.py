"""Running a program of this repository as a person would, and keeping what it printed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
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
