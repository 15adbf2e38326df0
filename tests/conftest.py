"""Test tiers. The unit tier (the folders below) may open no socket at all, whichever way it is run.

`make unit` runs these folders with pytest-socket's ``--disable-socket``; here every test collected from
them is also marked ``disable_socket``, so `make test` (the whole suite) enforces the same rule. A test
that needs a socket (a loopback stub server, the simulators, moto's server) belongs in another folder:
tests/clients/, tests/integration/, tests/simulators/ … which `make integration` runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
#: Keep in step with UNIT_TESTS in the Makefile (tests/unit/test_test_tiers.py checks it).
UNIT_TIER = ("unit", "property", "template")


def in_unit_tier(path: Path) -> bool:
    try:
        rel = path.resolve().relative_to(TESTS)
    except ValueError:
        return False
    return bool(rel.parts) and rel.parts[0] in UNIT_TIER


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if in_unit_tier(item.path):
            item.add_marker(pytest.mark.disable_socket)
