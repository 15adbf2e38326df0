"""`linkup-sync update` (`make update`): the checkout to the newest release, deployed with the answers
`setup` saved, run once, and what changed since the deployed version (from CHANGELOG.md)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from linkup_sync import __version__

from .output import PROG
from .setup_deploy import (
    Runner,
    Saved,
    child_environment,
    deploy_command,
    describe_run,
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


class _Stop(Exception):
    """The update ends here with this exit status; what went wrong has been written."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Steps:
    """The programs the update runs in the checkout (git, sam), each shown before it runs."""

    run: Runner
    checkout: Path
    child: Mapping[str, str]
    out: TextIO
    err: TextIO
    name: str = f"{PROG} update"

    def attempt(self, argv: list[str], capture: bool = False) -> str | None:
        """The program's output, or None when it failed (said on stderr)."""
        self.out.write("$ " + " ".join(argv) + "\n")
        self.out.flush()
        code, output = self.run(argv, self.checkout, self.child, capture)
        if code != 0:
            self.err.write(f"{self.name}: `{' '.join(argv[:2])}` failed (exit {code}); nothing more was done.\n")
            return None
        return output

    def must(self, argv: list[str], capture: bool = False) -> str:
        """The program's output; a failure ends the update with exit status 1."""
        output = self.attempt(argv, capture)
        if output is None:
            raise _Stop(1)
        return output

    def refuse(self, message: str) -> _Stop:
        """A person has to act first (exit status 2)."""
        self.err.write(f"{self.name}: {message}\n")
        return _Stop(2)


def _deployed_answers(steps: _Steps) -> Saved:
    saved = load_answers(steps.checkout / "samconfig.toml")
    if saved is None:
        raise steps.refuse("samconfig.toml holds no answers of `make setup`: run `make setup` first.")
    if not stack_outputs(saved.stack, saved.region):
        raise steps.refuse(f"there is no stack {saved.stack} in {saved.region}: run `make setup`.")
    return saved


def _newest(steps: _Steps) -> tuple[str, Version] | None:
    """The newest release tag, after fetching the tags when the checkout has a remote."""
    remotes = steps.must(["git", "remote"], capture=True)
    if remotes.strip():
        steps.must(["git", "fetch", "--tags", "--quiet"])
    return newest_release(steps.must(["git", "tag", "--list"], capture=True))


def _check_out(steps: _Steps, tag: str, saved: Saved) -> None:
    """The release checked out, when the checkout has no changes of its own but samconfig.toml."""
    status = steps.must(["git", "status", "--porcelain", "--untracked-files=no"], capture=True)
    changed = [ln[3:] for ln in status.splitlines() if ln.strip() and ln[3:].strip() != "samconfig.toml"]
    if changed:
        raise steps.refuse(f"the checkout has changes of its own ({', '.join(changed)}): commit or undo them first.")
    try:
        for argv in (["git", "checkout", "--quiet", "--", "samconfig.toml"], ["git", "checkout", "--quiet", tag]):
            steps.must(argv)
    finally:
        # The release's samconfig.toml (or the old one, if the checkout failed), always with the saved answers:
        # `make deploy` and the next `make update` need them.
        save_answers(steps.checkout / "samconfig.toml", saved)


def _deploy_and_run(sam: str, steps: _Steps, saved: Saved, version: Version) -> bool:
    """Build, deploy and invoke the function once; True when that run went well."""
    release = ".".join(str(v) for v in version)
    for argv in ([sam, "build"], deploy_command(sam, saved.stack, saved.region, saved.overrides, release)):
        steps.must(argv)
    output = steps.attempt(invoke_command(sam, saved.stack, saved.region), capture=True)
    result = run_result(output or "")
    return result is not None and describe_run(result, [], steps.out)


def _update(sam: str, steps: _Steps) -> int:
    out = steps.out
    saved = _deployed_answers(steps)
    deployed_text = stack_version(saved.stack, saved.region) or __version__
    deployed = version_of(deployed_text)
    newest = _newest(steps)
    if newest is None:
        out.write(f"No release has been published yet; the stack runs {deployed_text}. Nothing to update.\n")
        return 0
    tag, version = newest
    if deployed is not None and version <= deployed:
        out.write(f"The stack runs {deployed_text}, the newest release. Nothing to update.\n")
        return 0
    _check_out(steps, tag, saved)
    ok = _deploy_and_run(sam, steps, saved, version)
    changelog = steps.checkout / "CHANGELOG.md"
    notes = changelog_between(changelog.read_text(encoding="utf-8"), deployed, version) if changelog.exists() else ""
    out.write(f"\nUpdated {saved.stack} from {deployed_text} to {tag}.\n")
    if notes:
        out.write("\nWhat changed (CHANGELOG.md):\n\n" + notes + "\n")
    return 0 if ok else 1


def run_update(
    args: argparse.Namespace,
    env: Mapping[str, str],
    clock: Callable[[], float],
    out: TextIO,
    err: TextIO,
    *,
    runner: Runner | None = None,
) -> int:
    steps = _Steps(runner or run_program, Path(args.checkout).resolve(), child_environment(env), out, err)
    try:
        return _update(args.sam, steps)
    except _Stop as stop:
        return stop.code
