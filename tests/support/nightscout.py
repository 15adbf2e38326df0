"""Set-up shared by the unit tests that run a Nightscout client against the stand-in on loopback.

The fixtures are used by assigning them in the test module (``clock = nightscout.clock``), so pytest
finds them there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tools.simulators.clock import VirtualClock
from tools.simulators.nightscout import NightscoutStandIn

T0_S = 1_795_730_978.0  # 2026-11-26T22:09:38Z
SECRET = "test-secret-123456"  # the stand-in's API_SECRET


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0_S)


@pytest.fixture
def ns(clock: VirtualClock) -> Iterator[NightscoutStandIn]:
    server = NightscoutStandIn(clock).start()
    try:
        yield server
    finally:
        server.stop()
