"""A contract suite is only worth something if it fails for a store that breaks the contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

S = TypeVar("S")


def assert_the_contract_catches(sound: S, broken: S, contract_test: Callable[[S], None]) -> None:
    """`contract_test` passes for the sound store and fails (an AssertionError) for the broken one."""
    contract_test(sound)
    with pytest.raises(AssertionError):
        contract_test(broken)
