"""Property-based tests (hypothesis) of the Nightscout uploaders' reply handling.

The v1 and v3 uploaders against a stub server answering arbitrary status, body and content type give a
count or a typed error, never anything else (and never show the token). Moved out of
tests/property/test_parsers.py because the stub server is a loopback socket: the unit tier allows none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkup_sync.errors import NightscoutError
from linkup_sync.http import Deadline
from linkup_sync.nightscout.v1 import NightscoutV1
from linkup_sync.nightscout.v3 import NightscoutV3
from linkup_sync.readings import Reading
from tests.property.test_parsers import body_bytes, content_types, json_like

from ._stub_server import StubServer

NETWORK = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)

# --- Nightscout response handling ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


ns_statuses = st.one_of(
    st.sampled_from([200, 201, 204, 301, 302, 400, 401, 403, 404, 413, 422, 500, 502, 503]), st.integers(200, 599)
)
ns_bodies = st.one_of(
    st.binary(max_size=200),
    json_like.map(body_bytes),
    st.just(b"[]"),
    st.just(b'{"status":401,"message":"Unauthorized"}'),
    st.just(b'{"isDeduplication":true}'),
    st.just(b'{"token":"eyJhbGciOiJIUzI1NiJ9.e30.x","exp":4102444800}'),
    st.just(b'{"status":400,"message":"Field app cannot be modified by the client"}'),
)
replies = st.tuples(
    ns_statuses, ns_bodies, content_types, st.sampled_from([{}, {"Location": "https://x.example.org/"}])
)
READINGS = [
    Reading(epoch_ms=1_795_730_978_000 + 300_000 * i, sgv=100 + i, direction="Flat", source="graph") for i in range(3)
]


def queue(stub: StubServer, answers: list[tuple[int, bytes, str | None, dict[str, str]]]) -> None:
    stub.replies.clear()
    stub.requests.clear()
    for status, body, content_type, headers in answers:
        stub.add(status, body, {**({"Content-Type": content_type} if content_type else {}), **headers})


@NETWORK
@given(st.lists(replies, min_size=1, max_size=2), st.integers(1, 3))
def test_nightscout_v1_gives_a_count_or_a_typed_error(stub: StubServer, answers: Any, count: int) -> None:
    import time

    from linkup_sync.http import make_pool

    queue(stub, answers)
    sink = NightscoutV1(
        base_url=stub.url, token="bridge-0123456789abcdef", pool=make_pool(), deadline=Deadline(time.monotonic, 5)
    )
    try:
        sent = sink.upload(READINGS[:count])
        sink.post_sensor_start(serial="0E1234", activated_at=1_795_000_000)
    except NightscoutError as exc:
        assert exc.message and exc.reason and "bridge-0123456789abcdef" not in str(exc)
        return
    assert sent == count


@NETWORK
@given(st.lists(replies, min_size=1, max_size=6), st.integers(1, 3))
def test_nightscout_v3_gives_a_count_or_a_typed_error(stub: StubServer, answers: Any, count: int) -> None:
    import time

    from linkup_sync.http import make_pool

    queue(stub, answers)
    sink = NightscoutV3(
        base_url=stub.url,
        token="bridge-0123456789abcdef",
        pool=make_pool(maxsize=4),
        deadline=Deadline(time.monotonic, 5),
        clock=lambda: 1_795_730_978.0,
        parallel=1,
    )
    try:
        acknowledged = sink.upload(READINGS[:count])
        sink.post_sensor_start(serial="0E1234", activated_at=1_795_000_000)
    except NightscoutError as exc:
        assert exc.message and exc.reason and "bridge-0123456789abcdef" not in str(exc)
        return
    assert acknowledged == count
