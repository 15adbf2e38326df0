"""The light environment of `make setup`, `make secret` and `make update`: the linkup-sync package and its
runtime dependencies only (no test or development tool), in .venv-run.

    python3.11 tools/run_env.py .venv-run

A marker file records the Python it was made with and a hash of what was installed (pyproject.toml, the
lock whose versions it follows, and the package's sources). An environment without the marker, made by
another Python, or for other sources is removed and built again, never reused: a half-built or foreign
environment is what left `ModuleNotFoundError: No module named 'linkup_sync'` behind before.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = ".linkup-sync-run-env"
MINIMUM = (3, 11)
# What is installed: the project (its runtime dependencies from pyproject.toml), at the versions of the
# lock file used as constraints only, so no development tool is pulled in.
INSTALLED_FROM = ("pyproject.toml", "requirements-dev.lock")
SOURCES = ("layers/linkup_sync/python", "cli")


def too_old_text(version: tuple[int, ...]) -> str:
    shown = ".".join(str(v) for v in version[:3])
    return (
        f"linkup-sync needs Python 3.11 or newer; this is Python {shown}. In AWS CloudShell install it with\n"
        "    sudo dnf install -y python3.11\n"
        "then run the same make command again (it finds python3.11 by itself). Elsewhere install Python 3.11 "
        "or newer from your system's packages or python.org."
    )


def fingerprint(root: Path = ROOT) -> str:
    """A hash of everything the environment is built from."""
    digest = hashlib.sha256()
    files = [root / name for name in INSTALLED_FROM]
    for folder in SOURCES:
        files += sorted(p for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def marker_for(python: str, root: Path = ROOT) -> dict[str, str]:
    return {"python": os.path.realpath(python), "version": sys.version.split()[0], "sources": fingerprint(root)}


def needs_rebuild(env_dir: Path, expected: dict[str, str]) -> str | None:
    """Why the environment must be built (again), or None when it is current."""
    if not env_dir.exists():
        return "it does not exist yet"
    try:
        recorded = json.loads((env_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "it was not finished or not made by this tool"
    if recorded.get("python") != expected["python"] or recorded.get("version") != expected["version"]:
        return f"it was made with another Python ({recorded.get('version', '?')})"
    if recorded.get("sources") != expected["sources"]:
        return "the checkout changed since it was made"
    if not (env_dir / "bin" / "linkup-sync").exists():
        return "its linkup-sync command is missing"
    return None


def build(env_dir: Path, root: Path = ROOT) -> None:
    shutil.rmtree(env_dir, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "--constraint", str(root / "requirements-dev.lock"), str(root)], check=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if sys.version_info < MINIMUM:
        sys.stderr.write(too_old_text(tuple(sys.version_info[:3])) + "\n")
        return 2
    env_dir = Path(args[0] if args else ".venv-run").resolve()
    expected = marker_for(sys.executable)
    why = needs_rebuild(env_dir, expected)
    if why is None:
        return 0
    print(f"Building the light environment {env_dir.name} ({why}): linkup-sync and its runtime packages only.")
    try:
        build(env_dir)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(env_dir, ignore_errors=True)  # never leave a broken one behind to be reused
        sys.stderr.write(f"Building {env_dir.name} failed (exit {exc.returncode}); it was removed. See above.\n")
        return 1
    (env_dir / MARKER).write_text(json.dumps(expected), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
