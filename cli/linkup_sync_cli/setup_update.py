"""`linkup-sync update` (`make update`): the checkout to the newest release, deployed with the answers
`setup` saved, run once, and what changed since the deployed version (from CHANGELOG.md)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from linkup_sync import __version__

from .output import PROG
from .setup_deploy import (
    Runner,
    child_environment,
    deploy_command,
    invoke_command,
    load_answers,
    run_program,
    run_result,
    save_answers,
    stack_outputs,
    stack_version,
)

_TAG_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_HEADING_RE = re.compile(r"^## \[(\d+\.\d+\.\d+)\]")

Version = tuple[int, int, int]


def add_update_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    update = commands.add_parser(
        "update",
        help="bring a deployed stack to the newest release (make update)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run in the checkout `make setup` deployed from: fetches the release tags (git), checks "
        "out the newest\nrelease, deploys it with the answers saved in samconfig.toml (no questions), "
        "runs the function once\nand shows the result, then prints the CHANGELOG entries between the "
        "deployed version and the new one.",
    )
    update.add_argument("--checkout", metavar="DIR", default=".", help="the linkup-sync checkout (default: .)")
    update.add_argument("--sam", metavar="PROGRAM", default="sam", help="the sam CLI to run (default: sam)")
    update.add_argument("--now", type=float, help=argparse.SUPPRESS)  # pins the clock (tests), as for every command


def version_of(text: str) -> Version | None:
    match = _TAG_RE.match(text.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def newest_release(tags: str) -> tuple[str, Version] | None:
    found = [(tag, v) for tag in tags.split() if (v := version_of(tag)) is not None]
    return max(found, key=lambda pair: pair[1]) if found else None


def changelog_between(changelog: str, since: Version | None, until: Version) -> str:
    """The CHANGELOG sections of the versions after `since`, up to and including `until`."""
    kept: list[str] = []
    keep = False
    for line in changelog.splitlines():
        match = _HEADING_RE.match(line)
        if match or line.startswith("## "):
            version = version_of(match[1]) if match else None
            keep = version is not None and version <= until and (since is None or version > since)
        if keep:
            kept.append(line)
    return "\n".join(kept).strip()


def run_update(
    args: argparse.Namespace,
    env: Mapping[str, str],
    clock: Callable[[], float],
    out: TextIO,
    err: TextIO,
    *,
    runner: Runner | None = None,
) -> int:
    run = runner or run_program
    checkout = Path(args.checkout).resolve()
    child = child_environment(env)
    name = f"{PROG} update"

    def step(argv: list[str], capture: bool = False) -> str | None:
        out.write("$ " + " ".join(argv) + "\n")
        out.flush()
        code, output = run(argv, checkout, child, capture)
        if code != 0:
            err.write(f"{name}: `{' '.join(argv[:2])}` failed (exit {code}); nothing more was done.\n")
            return None
        return output

    saved = load_answers(checkout / "samconfig.toml")
    if saved is None:
        err.write(f"{name}: samconfig.toml holds no answers of `make setup`: run `make setup` first.\n")
        return 2
    outputs = stack_outputs(saved.stack, saved.region)
    if not outputs:
        err.write(f"{name}: there is no stack {saved.stack} in {saved.region}: run `make setup`.\n")
        return 2
    deployed_text = stack_version(saved.stack, saved.region) or __version__
    deployed = version_of(deployed_text)
    remotes = step(["git", "remote"], capture=True)
    if remotes is None:
        return 1
    if remotes.strip() and step(["git", "fetch", "--tags", "--quiet"]) is None:
        return 1
    tags = step(["git", "tag", "--list"], capture=True)
    if tags is None:
        return 1
    newest = newest_release(tags)
    if newest is None:
        out.write(f"No release has been published yet; the stack runs {deployed_text}. Nothing to update.\n")
        return 0
    tag, version = newest
    if deployed is not None and version <= deployed:
        out.write(f"The stack runs {deployed_text}, the newest release. Nothing to update.\n")
        return 0
    status = step(["git", "status", "--porcelain", "--untracked-files=no"], capture=True)
    if status is None:
        return 1
    changed = [ln[3:] for ln in status.splitlines() if ln.strip() and ln[3:].strip() != "samconfig.toml"]
    if changed:
        err.write(f"{name}: the checkout has changes of its own ({', '.join(changed)}): commit or undo them first.\n")
        return 2
    try:
        for argv in (["git", "checkout", "--quiet", "--", "samconfig.toml"], ["git", "checkout", "--quiet", tag]):
            if step(argv) is None:
                return 1
    finally:
        # The release's samconfig.toml (or the old one, if the checkout failed), always with the saved answers:
        # `make deploy` and the next `make update` need them.
        save_answers(checkout / "samconfig.toml", saved)
    release = ".".join(str(v) for v in version)
    for argv in ([args.sam, "build"], deploy_command(args.sam, saved.stack, saved.region, saved.overrides, release)):
        if step(argv) is None:
            return 1
    output = step(invoke_command(args.sam, saved.stack, saved.region), capture=True)
    result = run_result(output or "")
    ok = result is not None and "errorMessage" not in result and not result.get("skipped")
    if result is not None:
        from .setup_deploy import describe_run

        describe_run(result, [], out)
    changelog = checkout / "CHANGELOG.md"
    notes = changelog_between(changelog.read_text(encoding="utf-8"), deployed, version) if changelog.exists() else ""
    out.write(f"\nUpdated {saved.stack} from {deployed_text} to {tag}.\n")
    if notes:
        out.write("\nWhat changed (CHANGELOG.md):\n\n" + notes + "\n")
    return 0 if ok else 1
