"""Every circuit breaker in the code is in the documented table and ends as the table says (issue #10).

The breakers are found in the modules of the run (breakers.py, sync.py and upload.py: each ``Skipped(...)``
reason, the back-off reasons of BACKOFF_ERRORS, the Sensor Start refusal marker)
and matched with the rows of "Circuit breakers" in docs/alerts.md (the README's section until issue 22).
Each row then gets a scenario: the breaker is tripped with fakes and a virtual clock, holds just before the
stated end, and is gone at the stated end (time) or with the stated fix (a new secret version, a changed
LINK_UP_VERSION, a new sensor).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from linkup_sync import errors, report, sync
from linkup_sync.breakers import BACKOFF_ERRORS
from linkup_sync.model import Credentials, Graph, Sensor, Target, Ticket
from linkup_sync.readings import Reading
from linkup_sync.state.model import account_key
from linkup_sync.sync import SyncService
from tests.fakes import FakeLinkUp, FakeNightscout, MemoryStateStore

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000
PATIENT = "p1"


def readme_breakers() -> dict[str, str]:
    """reason -> the row's "Ends" cell, from the breaker table of docs/alerts.md (the README's until issue 22)."""
    text = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    section = text.split("\n## Circuit breakers\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("Breaker", "---"):
            continue
        for reason in re.findall(r"`([a-z_]+)`", cells[0]):
            rows[reason] = cells[2]
    return rows


def code_breakers() -> set[str]:
    package = ROOT / "layers/linkup_sync/python/linkup_sync"
    source = "".join((package / name).read_text(encoding="utf-8") for name in ("breakers.py", "sync.py", "upload.py"))
    reasons: set[str] = set()
    for call in re.finditer(r"(?:raise|return) Skipped\(\s*(.*?),\n", source, re.S):
        reasons.update(re.findall(r'"([a-z_]+)"', call.group(1)))
    reasons.discard("backoff")  # the fallback label of the back-off, whose reasons come from the errors
    reasons.update(cls.reason for cls in BACKOFF_ERRORS)
    reasons.update(cls.reason for err in BACKOFF_ERRORS for cls in err.__subclasses__())  # unreachable
    if "marker" in source and "post_sensor_start" in source:  # the Sensor Start refusal marker
        reasons.add("sensor_start")
    return reasons


def test_every_breaker_in_the_code_is_in_the_readme_table_and_no_other() -> None:
    assert code_breakers() == set(readme_breakers())


# --- scenarios ---------------------------------------------------------------------------------------


@dataclass
class Faulty(FakeLinkUp):
    login_errors: list[Exception] = field(default_factory=list)
    graph_errors: list[Exception] = field(default_factory=list)

    def login(self, username: str, password: str, region: str) -> Ticket:
        if self.login_errors:
            self.logins += 1
            self.requests.append("login")
            raise self.login_errors.pop(0)
        return super().login(username, password, region)

    def graph(self, ticket: Ticket, patient_id: str) -> Graph:
        if self.graph_errors:
            self.requests.append("graph")
            raise self.graph_errors.pop(0)
        graph = super().graph(ticket, patient_id)
        return graph


class World:
    def __init__(self) -> None:
        self.now = float(NOW)
        self.llu = Faulty(connection_ids=[PATIENT], graphs={PATIENT: self.graph(NOW)})
        self.ns = FakeNightscout()
        self.store = MemoryStateStore()
        self.secret_version = "v1"
        self.version = "4.16.0"
        self.auto = False

    def graph(self, t: float, sensor: Sensor | None = None) -> Graph:
        current = Reading(int(t - 60) * 1000, 120, "Flat", "current")
        return Graph(patient_id=PATIENT, current=current, history=(), sensor=sensor)

    def creds(self) -> Credentials:
        target = Target(patient_id=None, nightscout_url="https://ns.example.org", nightscout_token="t")
        return Credentials(username="f@example.invalid", password="pw", targets=(target,), version=self.secret_version)

    def run(self) -> report.RunReport | Exception:
        self.llu.version = self.version
        self.llu.graphs[PATIENT] = self.graph(self.now, self.llu.graphs[PATIENT].sensor)
        service = SyncService(
            source=self.llu,
            sinks=lambda target, stored: self.ns,
            store=self.store,
            clock=lambda: self.now,
            region="eu",
            version_auto=self.auto,
            jitter=lambda: 1.0,  # the longest first pause: 120 s x 1.2
        )
        try:
            return service.run(self.creds())
        except errors.LinkupSyncError as exc:
            return exc

    def skipped(self) -> str | None:
        result = self.run()
        return result.skipped if isinstance(result, report.RunReport) else None

    def login_now(self) -> None:
        """Make the stored ticket unusable, so the next run has to log in."""
        key = account_key("f@example.invalid")
        self.store.accounts[key] = dataclasses.replace(self.store.accounts[key], ticket=None)


def holds_until(world: World, seconds: float, reason: str) -> None:
    """The breaker holds just before `seconds` from now and is gone at `seconds`."""
    start = world.now
    world.now = start + seconds - 2
    assert world.skipped() == reason
    world.now = start + seconds
    assert world.skipped() is None


def healthy(world: World) -> None:
    result = world.run()
    assert isinstance(result, report.RunReport) and result.skipped is None, result


def bad_credentials(world: World, ends: str) -> None:
    assert "new version" in ends
    healthy(world)
    world.login_now()
    world.llu.login_errors = [errors.LinkUpBadCredentials()]
    assert isinstance(world.run(), errors.LinkUpBadCredentials)
    world.now += 400 * 24 * 3600  # no time ends it: another login could lock the account
    assert world.skipped() == "bad_credentials"
    world.secret_version = "v2"  # the fix: the secret was changed
    assert world.skipped() is None and world.llu.logins == 3  # one login per secret version


def locked(world: World, ends: str) -> None:
    assert "lockout" in ends and "60 seconds" in ends
    healthy(world)
    world.login_now()
    world.llu.login_errors = [errors.LinkUpLocked(300)]
    assert isinstance(world.run(), errors.LinkUpLocked)
    holds_until(world, 300 + 60, "locked")


def action_required(world: World, ends: str) -> None:
    assert "1 hour" in ends
    healthy(world)
    world.login_now()
    world.llu.login_errors = [errors.LinkUpActionRequired("tou")]
    assert isinstance(world.run(), errors.LinkUpActionRequired)
    holds_until(world, 3600, "action_required")


def version(world: World, ends: str) -> None:
    assert "1 hour" in ends and "LINK_UP_VERSION" in ends
    healthy(world)
    world.llu.graph_errors = [errors.LinkUpVersionRejected("4.17.0", "4.16.0")]
    assert isinstance(world.run(), errors.LinkUpVersionRejected)
    holds_until(world, 3600, "version")  # asked again hourly (and it is accepted again)
    world.llu.graph_errors = [errors.LinkUpVersionRejected("4.17.0", "4.16.0")]
    assert isinstance(world.run(), errors.LinkUpVersionRejected)
    assert world.skipped() == "version"
    world.version = "4.17.0"  # the fix: the setting changed
    assert world.skipped() is None
    # a 5.x minimum, even with auto: asked again hourly too
    world.auto, world.version = True, "4.16.0"
    world.llu.graph_errors = [errors.LinkUpVersionRejected("5.0.0", "4.16.0")]
    assert isinstance(world.run(), errors.LinkUpVersionRejected)
    holds_until(world, 3600, "version")


BACKOFF_FAULTS: dict[str, Callable[[], errors.LinkUpError]] = {
    "rate_limited": lambda: errors.LinkUpRateLimited(),
    "blocked": lambda: errors.LinkUpBlocked(403),
    "maintenance": lambda: errors.LinkUpMaintenance(),
    "server_error": lambda: errors.LinkUpVersionContradicted("4.16.0", "4.16.0"),
    "timeout": lambda: errors.LinkUpTimeout(),
    "unreachable": lambda: errors.LinkUpUnreachable(),
    "too_large": lambda: errors.LinkUpTooLarge("the answer of api-eu.libreview.io is larger than 4 MB"),
}


def backoff(reason: str) -> Callable[[World, str], None]:
    def scenario(world: World, ends: str) -> None:
        assert "2 minutes" in ends and "30 minutes" in ends and "1 day" in ends
        healthy(world)
        world.llu.graph_errors = [BACKOFF_FAULTS[reason]()]
        assert isinstance(world.run(), errors.LinkUpError)
        holds_until(world, 144, reason)  # 2 minutes, with the largest jitter
        world.llu.graph_errors = [BACKOFF_FAULTS[reason]() for _ in range(12)]
        for _ in range(12):  # failure after failure: the pause is capped
            world.now = float(world.store.accounts[account_key("f@example.invalid")].backoff_until or world.now)
            assert isinstance(world.run(), errors.LinkUpError)
        holds_until(world, 30 * 60, reason)
        world.llu.graph_errors = [errors.LinkUpRateLimited(retry_after=10 * 24 * 3600)]  # an absurd Retry-After
        assert isinstance(world.run(), errors.LinkUpRateLimited)
        holds_until(world, 24 * 3600, "rate_limited")

    return scenario


def login_in_progress(world: World, ends: str) -> None:
    assert "60 seconds" in ends
    world.store.acquire_login_lock(account_key("f@example.invalid"), world.now, sync.LOGIN_LOCK_S)  # another run
    holds_until(world, 60 + 1, "login_in_progress")


def sensor_start(world: World, ends: str) -> None:
    assert "next sensor" in ends
    first, second = Sensor("0E1", NOW - 86400), Sensor("0E2", NOW)

    def refuse(*, serial: str, activated_at: int) -> None:
        world.ns.requests_made += 1
        asked.append(serial)
        raise errors.NightscoutUnauthorized()

    asked: list[str] = []
    world.ns.post_sensor_start = refuse  # type: ignore[method-assign]
    world.llu.graphs[PATIENT] = world.graph(world.now, first)
    for _ in range(3):
        healthy(world)
        world.now += 300
    assert asked == ["0E1"]  # asked once for this sensor
    world.llu.graphs[PATIENT] = world.graph(world.now, second)
    healthy(world)
    assert asked == ["0E1", "0E2"]  # the next sensor ends it


SCENARIOS: dict[str, Callable[[World, str], None]] = {
    "bad_credentials": bad_credentials,
    "locked": locked,
    "action_required": action_required,
    "version": version,
    "login_in_progress": login_in_progress,
    "sensor_start": sensor_start,
    **{reason: backoff(reason) for reason in BACKOFF_FAULTS},
}


@pytest.mark.parametrize("reason", sorted(readme_breakers()))
def test_each_breaker_ends_as_the_readme_says(reason: str) -> None:
    SCENARIOS[reason](World(), readme_breakers()[reason])


@pytest.mark.parametrize(
    "fault",
    [
        lambda: errors.LinkUpPatientNotFound(PATIENT, []),
        lambda: errors.LinkUpMalformedResponse("body status 7"),
        lambda: errors.LinkUpMissingHeader(),
    ],
    ids=["patient_not_found", "malformed", "missing_header"],
)
def test_answers_that_can_be_mistakes_stop_no_run(fault: Callable[[], errors.LinkUpError]) -> None:
    world = World()
    healthy(world)
    for _ in range(3):  # however often LibreLink Up says it, the next run asks again
        world.llu.graph_errors = [fault()]
        world.now += 300
        assert isinstance(world.run(), errors.LinkUpError)
        requests = len(world.llu.requests)
        world.now += 300
        healthy(world)
        assert len(world.llu.requests) > requests
    account = world.store.accounts[account_key("f@example.invalid")]
    assert account.backoff_until is None and account.rejected_version is None and account.login_not_before is None


def test_auto_adopts_a_minimum_named_at_login_for_the_next_run() -> None:
    """A 920 where no retry happens in the run (the login, or a second raise) is adopted for the next run."""
    world = World()
    world.auto = True
    world.llu.login_errors = [errors.LinkUpVersionRejected("4.17.0", "4.16.0")]
    assert isinstance(world.run(), errors.LinkUpVersionRejected)
    account = world.store.accounts[account_key("f@example.invalid")]
    assert account.version == "4.17.0" and account.rejected_version is None
    world.now += 300
    healthy(world)  # no breaker, no person: the next run logs in with 4.17.0
    assert world.llu.version == "4.17.0"
