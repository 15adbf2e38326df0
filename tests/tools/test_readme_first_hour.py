"""The first-hour texts after issue 13: examples against `make sandbox`, sam commands that work with .venv-sam,
documented exit codes, the saved-answers trap, and the Moving section's mapping. Since issue 22 they are
pages of the documentation site (docs/); README.md links to them."""

from __future__ import annotations

import re
from pathlib import Path

from tools.sandbox import suggested_commands

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = {path.name: path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.md"))}
ALL = "\n".join([README, *PAGES.values()])


def _page(name: str) -> str:
    return PAGES[name]


def _section(page: str, title: str) -> str:
    """A `## title` section of a page of docs/, up to the next `## ` heading."""
    text = _page(page)
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _code_lines() -> list[str]:
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", ALL, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()]


def test_command_line_examples_use_the_sandbox() -> None:
    assert "simulators of `make demo`" not in ALL  # they stop when the demo ends
    assert "make sandbox" in README
    sandbox = _section("try-it.md", "make sandbox")
    for command in suggested_commands():  # the commands the sandbox prints, as the README shows them
        shown = command.split("linkup-sync", 1)[-1] if "linkup-sync " in command else "-m tools.run_handler"
        assert shown.strip() in sandbox, shown
    command_line = _page("command-line.md")
    assert '--state "$LINKUP_SANDBOX_STATE"' in command_line.split("\n## Check your set-up\n")[0]
    assert '--state "$LINKUP_SANDBOX_STATE"' in _section("command-line.md", "Check your set-up")


def test_sam_commands_work_when_make_installed_sam() -> None:
    bare = [line for line in _code_lines() if re.match(r"^sam\s", line)]
    assert not bare, f"code lines run a bare `sam` (not on PATH when make installed it): {bare}"
    assert ".venv-sam/bin/sam" in _section("setup.md", "Deploy from a terminal")


def test_exit_codes_are_documented() -> None:
    text = " ".join(_page("command-line.md").split("\n## Check your set-up\n")[0].split())
    assert "| 2 | a person has to act" in text and "Every run exits with 2 until it is fixed" in text
    assert "| 1 | the run failed" in text and "| 0 |" in text


def test_version_pin_says_how_to_make_it_stay() -> None:
    text = " ".join(_page("troubleshooting.md").split())
    assert "undone by the next make deploy" in text and "parameter_overrides" in text


def test_moving_section_maps_interval_and_log_level() -> None:
    moving = _page("moving-from-nightscout-librelink-up.md")
    assert re.search(r"`LINK_UP_TIME_INTERVAL`.*`ScheduleRate`", moving)
    assert re.search(r"`LOG_LEVEL`.*`LogLevel`", moving)
    assert re.search(r"`NIGHTSCOUT_DISABLE_HTTPS`.*`NIGHTSCOUT_ALLOW_HTTP=true`", moving)


def test_region_texts_name_both_variables() -> None:
    assert "AWS_REGION` or `AWS_DEFAULT_REGION`" in _page("command-line.md")
