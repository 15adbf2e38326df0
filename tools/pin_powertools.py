"""Pin the deployed Powertools layer to the version the lock file tests (`make lock` runs this after
pip-compile).

    python -m tools.pin_powertools            # rewrite the files below from requirements-dev.lock
    python -m tools.pin_powertools --check    # exit 1 when a file names another version

The functions run Powertools from its public layer, found through the SSM parameter the stack's
PowertoolsLayerArn names. Powertools publishes one parameter per release,
/aws/service/powertools/python/<arch>/<python>/<version>, and one named `latest` that moves with every
release: with `latest`, the first run with a new Powertools would happen in people's accounts, not here.
So both templates (and what the setup command knows as their default, and the settings page) name the
version of aws-lambda-powertools in requirements-dev.lock.

Standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = "requirements-dev.lock"
# The runtime and architecture of both templates' functions (Runtime: python3.13, Architectures: arm64).
PARAMETER_PREFIX = "/aws/service/powertools/python/arm64/python3.13/"
# Every file that names the parameter's default: the templates, the setup command's copy of the templates'
# defaults (tests/template/test_setup_parameters.py keeps it equal to template.yaml) and the settings page.
PINNED_FILES = (
    "template.yaml",
    "hosted.yaml",
    "cli/linkup_sync_cli/setup_deploy.py",
    "docs/settings.md",
)
_LOCKED = re.compile(r"^aws-lambda-powertools==([0-9][0-9A-Za-z.+-]*)\s*$", re.MULTILINE)
_PARAMETER = re.compile(re.escape(PARAMETER_PREFIX) + r"([0-9A-Za-z.+-]+)")


class PinError(Exception):
    """The lock names no Powertools version, or a file no longer names the parameter."""


def locked_version(root: Path = ROOT) -> str:
    """The aws-lambda-powertools version requirements-dev.lock pins."""
    found = _LOCKED.findall((root / LOCK).read_text(encoding="utf-8"))
    if len(found) != 1:
        raise PinError(f"{LOCK} must pin aws-lambda-powertools exactly once (aws-lambda-powertools==X.Y.Z).")
    return str(found[0])


def parameter_name(version: str) -> str:
    return PARAMETER_PREFIX + version


def named_versions(text: str) -> list[str]:
    """The versions (or `latest`) a file's text names in the Powertools parameter."""
    return _PARAMETER.findall(text)


def pin(root: Path = ROOT, *, check: bool = False) -> list[str]:
    """Point every file in PINNED_FILES at the locked version; the files that were (check: would be)
    changed. A file that names the parameter nowhere is a PinError: its default moved, this tool must too."""
    version = locked_version(root)
    pinned: dict[str, str] = {}
    for name in PINNED_FILES:  # every file checked before any is written: never half pinned
        text = (root / name).read_text(encoding="utf-8")
        if not named_versions(text):
            raise PinError(f"{name} no longer names {PARAMETER_PREFIX}<version>: update PINNED_FILES in {__name__}.")
        new = _PARAMETER.sub(parameter_name(version), text)
        if new != text:
            pinned[name] = new
    if not check:
        for name, text in pinned.items():
            (root / name).write_text(text, encoding="utf-8")
    return list(pinned)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a file is not pinned")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # the tests' copies
    args = parser.parse_args(argv)
    try:
        changed = pin(args.root, check=args.check)
    except PinError as exc:
        print(f"pin_powertools: {exc}", file=sys.stderr)
        return 2
    version = locked_version(args.root)
    if args.check and changed:
        print(f"Not pinned to Powertools {version} (run make lock): " + ", ".join(changed), file=sys.stderr)
        return 1
    what = ", ".join(changed) if changed else "nothing to change"
    print(f"Powertools layer pinned to {version} ({parameter_name(version)}): {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
