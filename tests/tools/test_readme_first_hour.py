"""The README after issue 13: examples against `make sandbox`, sam commands that work with .venv-sam,
documented exit codes, the saved-answers trap, and the Moving section's mapping."""

from __future__ import annotations

import re
from pathlib import Path

from tools.sandbox import suggested_commands

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def _code_lines() -> list[str]:
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", README, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()]


def test_command_line_examples_use_the_sandbox() -> None:
    assert "simulators of `make demo`" not in README  # they stop when the demo ends
    assert "make sandbox" in README
    sandbox = _section("Try it without an account")
    for command in suggested_commands():  # the commands the sandbox prints, as the README shows them
        shown = command.split("linkup-sync", 1)[-1] if "linkup-sync " in command else "-m tools.run_handler"
        assert shown.strip() in sandbox, shown
    for title in ("Command line", "Check your set-up"):
        assert '--state "$LINKUP_SANDBOX_STATE"' in _section(title)


def test_sam_commands_work_when_make_installed_sam() -> None:
    bare = [line for line in _code_lines() if re.match(r"^sam\s", line)]
    assert not bare, f"code lines run a bare `sam` (not on PATH when make installed it): {bare}"
    assert ".venv-sam/bin/sam" in _section("Deploy")


def test_exit_codes_are_documented() -> None:
    text = " ".join(_section("Command line").split())
    assert "| 2 | a person has to act" in text and "Every run exits with 2 until it is fixed" in text
    assert "| 1 | the run failed" in text and "| 0 |" in text


def test_version_pin_says_how_to_make_it_stay() -> None:
    text = " ".join(_section("Troubleshooting").split())
    assert "undone by the next make deploy" in text and "parameter_overrides" in text


def test_moving_section_maps_interval_and_log_level() -> None:
    moving = _section("Moving from nightscout-librelink-up")
    assert re.search(r"`LINK_UP_TIME_INTERVAL`.*`ScheduleRate`", moving)
    assert re.search(r"`LOG_LEVEL`.*`LogLevel`", moving)
    assert re.search(r"`NIGHTSCOUT_DISABLE_HTTPS`.*`NIGHTSCOUT_ALLOW_HTTP=true`", moving)


def test_region_texts_name_both_variables() -> None:
    assert "AWS_REGION` or `AWS_DEFAULT_REGION`" in README
