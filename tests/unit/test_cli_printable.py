"""Issue 21: everything the command line prints goes through one filter of control characters
(linkup_sync_cli.output.PrintableText); doctor's own progress codes are the only ones that pass."""

from __future__ import annotations

import io

import pytest

from linkup_sync_cli import main as cli
from linkup_sync_cli.output import PrintableText, printable, printable_stream, write_control
from linkup_sync_cli.reporter import Reporter

CONTROLS = [chr(c) for c in (*range(0, 9), *range(11, 32), 0x7F, *range(0x80, 0xA0))]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"]


@pytest.mark.parametrize("char", CONTROLS + BIDI)
def test_every_control_character_is_dropped(char: str) -> None:
    assert printable(f"a{char}b") == "ab"


def test_text_newlines_tabs_and_other_scripts_stay() -> None:
    text = "✔ Nightscout\tok\n  – Zoë 山田 😀 ≥ 40 mg/dL …\n"
    assert printable(text) == text


def test_the_stream_filters_writes_and_passes_its_own_codes() -> None:
    raw = io.StringIO()
    stream = PrintableText(raw)
    stream.write("name: \x1b]0;owned\x07fiona\r\n")
    stream.writelines(["\x1b[2Jx\n"])
    stream.control("\r\x1b[K")
    assert raw.getvalue() == "name: ]0;ownedfiona\n[2Jx\n\r\x1b[K"
    assert printable_stream(printable_stream(raw)) is not raw  # wrapped once
    wrapped = printable_stream(raw)
    assert printable_stream(wrapped) is wrapped


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_doctor_progress_line_is_still_erased_on_a_terminal() -> None:
    raw = Tty()
    reporter = Reporter(printable_stream(raw))
    reporter.start("Nightscout \x1b[31m")
    reporter.ok("Nightscout", "reached \x1b[2J")
    text = raw.getvalue()
    assert "\r\x1b[K" in text  # the reporter's own code
    assert "\x1b[31m" not in text and "\x1b[2J" not in text  # nothing of the text's


def test_main_wraps_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sync"], env={}) == 2  # without --once: a usage line on standard error
    assert "add --once" in capsys.readouterr().err


def test_write_control_passes_the_commands_own_codes_past_the_filter_and_writes_them_plainly_elsewhere() -> None:
    raw = io.StringIO()
    write_control(PrintableText(raw), "\r\x1b[K")
    assert raw.getvalue() == "\r\x1b[K"  # PrintableText.write would have dropped both
    PrintableText(raw).write("\r\x1b[K")
    assert raw.getvalue() == "\r\x1b[K[K"  # written as text: the escape and the return are gone
    plain = io.StringIO()
    write_control(plain, "\r")
    assert plain.getvalue() == "\r"
