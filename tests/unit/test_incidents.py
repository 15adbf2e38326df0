"""The incident desk on an in-memory store: once per incident, retries after a failed send, reminders."""

from __future__ import annotations

import pytest

from linkup_sync import errors
from linkup_sync.incidents.desk import IncidentDesk, Observation
from linkup_sync.incidents.model import incident_for, stale_incident
from linkup_sync.incidents.texts import SUBJECT_MAX
from tests.fakes import MemoryIncidentStore


class Inbox:
    def __init__(self) -> None:
        self.mails: list[tuple[str, str]] = []
        self.fail = 0

    def publish(self, subject: str, body: str) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("SNS unreachable")
        self.mails.append((subject, body))


class Board:
    def __init__(self) -> None:
        self.posts: list[tuple[str, int]] = []
        self.error: errors.NightscoutError | None = None

    def post_announcement(self, *, text: str, at_ms: int) -> None:
        if self.error is not None:
            raise self.error
        self.posts.append((text, at_ms))


def desk(store: MemoryIncidentStore, inbox: Inbox, board: Board, now: list[float]) -> IncidentDesk:
    return IncidentDesk(store=store, clock=lambda: now[0], publisher=inbox, announcers={"": [("site", board)]})


BAD = incident_for(errors.LinkUpBadCredentials())


def test_a_failed_send_is_retried_by_the_next_run_and_sent_once() -> None:
    store, inbox, board, now = MemoryIncidentStore(), Inbox(), Board(), [1_000_000.0]
    assert BAD is not None
    inbox.fail = 1
    board.error = errors.NightscoutUnreachable("down")
    desk(store, inbox, board, now).process(Observation(seen=[BAD]))
    assert inbox.mails == [] and board.posts == []
    board.error = None
    for _ in range(3):
        now[0] += 300
        desk(store, inbox, board, now).process(Observation(seen=[BAD]))
    assert len(inbox.mails) == 1 and len(board.posts) == 1


def test_reminder_exactly_after_24_hours_and_one_all_clear() -> None:
    store, inbox, board, now = MemoryIncidentStore(), Inbox(), Board(), [1_000_000.0]
    assert BAD is not None
    desk(store, inbox, board, now).process(Observation(seen=[BAD]))
    now[0] += 24 * 3600 - 1
    desk(store, inbox, board, now).process(Observation())
    assert len(inbox.mails) == 1
    now[0] += 1
    desk(store, inbox, board, now).process(Observation())
    assert len(inbox.mails) == 2 and "still open" in inbox.mails[1][0]
    for _ in range(2):
        now[0] += 300
        desk(store, inbox, board, now).process(Observation(solved_scopes={""}))
    assert len(inbox.mails) == 3 and "solved" in inbox.mails[2][0]
    assert [p[0].startswith("linkup-sync: solved") for p in board.posts] == [False, True]


def test_refused_announcements_warn_once_and_are_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    store, inbox, board, now = MemoryIncidentStore(), Inbox(), Board(), [1_000_000.0]
    assert BAD is not None
    board.error = errors.NightscoutUnauthorized()
    for _ in range(5):
        desk(store, inbox, board, now).process(Observation(seen=[BAD]))
        now[0] += 300
    desk(store, inbox, board, now).process(Observation(solved_scopes={""}))
    assert caplog.text.count("Nightscout refused the announcement") == 1
    assert board.posts == [] and len(inbox.mails) == 2  # the e-mails are not affected


@pytest.mark.parametrize(
    "exc",
    [
        errors.LinkUpBadCredentials(),
        errors.LinkUpActionRequired("tou"),
        errors.LinkUpActionRequired("verifyEmail"),
        errors.LinkUpVersionRejected("4.99.0", "4.16.0"),
        errors.LinkUpVersionRejected("5.0.0", "4.16.0"),
        errors.LinkUpNoConnections(),
        errors.SecretError(["The secret lacks LINK_UP_PASSWORD."]),
        errors.NightscoutUnauthorized(),
    ],
)
def test_every_incident_has_a_short_subject_and_says_what_to_do(exc: errors.LinkupSyncError) -> None:
    store, inbox, board, now = MemoryIncidentStore(), Inbox(), Board(), [1_000_000.0]
    incident = incident_for(exc, secret_hint="aws secretsmanager put-secret-value --secret-id X")
    assert incident is not None
    desk(store, inbox, board, now).process(Observation(seen=[incident]))
    ((subject, body),) = inbox.mails
    assert len(subject) <= SUBJECT_MAX and subject.isascii() and "\n" not in subject
    assert "What happened:" in body and "Since:" in body and "What to do:" in body


def test_passing_problems_are_no_incidents() -> None:
    for exc in (errors.LinkUpRateLimited(), errors.NightscoutUnreachable("x"), errors.LinkUpMaintenance()):
        assert incident_for(exc) is None
    assert stale_incident(30, scope="").email is False  # the stale-data alarm e-mails that one
