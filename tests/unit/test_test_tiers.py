"""The unit tier really opens no socket, and `make unit` / `make integration` split the suite exactly."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from pytest_socket import SocketBlockedError

from tests.conftest import TESTS, UNIT_TIER, in_unit_tier

ROOT = TESTS.parent


def makefile_unit_tests() -> list[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^UNIT_TESTS := (.+)$", text, re.MULTILINE)
    assert match, "the Makefile defines UNIT_TESTS"
    return match.group(1).split()


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_a_unit_test_cannot_open_a_socket() -> None:
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_the_makefile_and_the_conftest_name_the_same_unit_folders() -> None:
    assert makefile_unit_tests() == [f"tests/{name}" for name in UNIT_TIER]
    for name in UNIT_TIER:
        assert (TESTS / name).is_dir()


def test_the_tiers_together_cover_every_test_folder() -> None:
    """`make integration` runs everything but the unit folders, so no test folder falls between the tiers."""
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert set(UNIT_TIER) <= folders
    assert folders - set(UNIT_TIER) >= {"clients", "integration", "simulators"}


def test_in_unit_tier() -> None:
    assert in_unit_tier(TESTS / "unit" / "test_x.py")
    assert in_unit_tier(TESTS / "template" / "test_template.py")
    assert not in_unit_tier(TESTS / "clients" / "test_nightscout_v1.py")
    assert not in_unit_tier(Path("/elsewhere/unit/test_x.py"))
