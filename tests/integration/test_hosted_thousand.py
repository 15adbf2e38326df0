"""The hosted stack's proof (issue 14): a thousand accounts for one simulated hour.

moto (in process) plays DynamoDB, SQS and KMS; the LibreLink Up simulator has one follower account per
hosted account; NightscoutSites serves one full Nightscout stand-in per account. tools/hosted_stack.py
plays EventBridge Scheduler (the dispatcher at second 0 of every minute) and Lambda's SQS poller (the
visible messages to the real Worker, every virtual second).

Within the hour one account's password is changed in the app (the stored one is wrong), another
account's Nightscout is down for twenty minutes, and every seventh message is delivered twice. Every
account must still see exactly what it would alone: its readings once each on its own site, one login,
twelve runs; the two broken accounts' troubles stay theirs.

The smaller tests below each take one rule on its own: a second delivery changes nothing, a late
message is dropped, an account removed while its message is on the way does nothing.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tools.hosted_stack import HostedPerson, HostedStack, MinuteResult
from tools.simulators.librelinkup.plumbing import RecordedRequest, ServedGraph

from linkup_sync.hosted.registry import REGISTRY_PK, incidents_partition
from linkup_sync.hosted.schedule import DUE_PREFIX, INTERVALS, partitions_due
from linkup_sync.hosted.worker import Outcome
from linkup_sync.state.incidents import DynamoDBIncidentStore
from tests.integration.checks import GAP_S

ACCOUNTS = 1000
MINUTES = 60
RUNS = MINUTES // 5  # the default interval
HISTORY_S = 2 * 3600  # what each patient's sensor already holds at the start (the first run's upload)
BAD, DOWN = 271, 642  # the account whose password changed, the one whose Nightscout is down
DOWN_MINUTES = range(10, 30)  # its history points come back (17 minutes late) well within the hour
DUPLICATE_EVERY = 7


@contextlib.contextmanager
def hosted(**options: Any) -> Iterator[HostedStack]:
    stack = HostedStack(patient_history_s=HISTORY_S, **options)
    try:
        yield stack
    finally:
        stack.stop()


# --- what the hour left behind ------------------------------------------------------------------------


@dataclass
class TableCalls:
    """Every DynamoDB request of the hour: (epoch minute, operation, partition asked for)."""

    calls: list[tuple[int, str, str]]

    @classmethod
    def watch(cls, stack: HostedStack) -> TableCalls:
        spy = cls([])

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            values = params.get("ExpressionAttributeValues") or {}
            partition = (values.get(":pk") or (params.get("Key") or {}).get("pk") or {}).get("S", "")
            spy.calls.append((stack.minute, model.name, partition))

        stack.ddb.meta.events.register("provide-client-params.dynamodb.*", record)
        return spy

    def due_queries(self) -> dict[int, list[str]]:
        found: dict[int, list[str]] = defaultdict(list)
        for minute, operation, partition in self.calls:
            if operation == "Query" and partition.startswith(DUE_PREFIX):
                found[minute].append(partition)
        return found


def requests_by_email(stack: HostedStack) -> dict[str, Counter[str]]:
    """LibreLink Up requests per follower account: login by its body, the others by their Account-Id."""
    email_of = {account.account_id: email for email, account in stack.llu.accounts.items()}
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for request in stack.llu.requests:
        if request.path.startswith("/llu/auth/login"):
            found[str(json.loads(request.body).get("email", "")).lower()]["login"] += 1
        else:
            found[email_of.get(request.headers.get("account-id", ""), "?")][kind(request)] += 1
    return found


def kind(request: RecordedRequest) -> str:
    return "graph" if request.path.endswith("/graph") else request.path


def reading_problems(
    stack: HostedStack, person: HostedPerson, polls: list[ServedGraph], unreachable: Callable[[float], bool]
) -> list[str]:
    """What is wrong with this person's site, as against what LibreLink Up offered for their patient:
    duplicates, readings that are not theirs, offered readings that never arrived (checks.py's rules:
    every current reading by its instant, every history point within GAP_S of an entry, a gap-filling
    point never next to another entry; a current reading offered while the site was down may arrive as
    the history point beside it)."""
    patient = stack.llu.patient(person.patient_id)
    entries = person.site.sgv_entries()
    problems = [f"{len(group)} entries at {group[0]['date']}" for group in person.site.duplicates()]
    instants = [int(entry["date"]) // 1000 for entry in entries]
    stored = sorted(set(instants))
    if len(stored) != len(instants):
        problems.append(f"{len(instants) - len(stored)} instants stored twice")
    current = {poll.current_epoch_s: poll.time for poll in polls if poll.current_epoch_s is not None}
    history = {t for poll in polls for t in poll.history_epoch_s}

    def near(t: int) -> bool:
        i = bisect.bisect_left(stored, t - GAP_S)
        return i < len(stored) and stored[i] <= t + GAP_S

    for entry, t in zip(entries, instants, strict=True):
        if t not in current and t not in history:
            problems.append(f"entry at {t}: LibreLink Up never offered it for this patient")
        elif entry["sgv"] != patient.mg_at(t):
            problems.append(f"entry at {t}: {entry['sgv']} mg/dL, this patient's reading is {patient.mg_at(t)}")
    for t, offered_at in sorted(current.items()):
        if t not in stored and not (unreachable(offered_at) and near(t)):
            problems.append(f"current reading {t} (offered at {offered_at}) is missing")
    problems += [f"history point {t} has no entry within {GAP_S} s" for t in sorted(history) if not near(t)]
    for i, t in enumerate(stored):
        if t not in current and any(abs(u - t) <= GAP_S for u in stored[max(0, i - 1) : i + 2] if u != t):
            problems.append(f"history point {t} was uploaded next to another entry")
    return problems


def incident_kinds(stack: HostedStack, person: HostedPerson) -> dict[str, bool]:
    """This account's incidents: kind -> still open."""
    store = DynamoDBIncidentStore(stack.table, stack.ddb, stack.clock, pk=incidents_partition(person.account_id))
    return {kind: record.is_open for (kind, _scope), record in store.load_incidents().items()}


# --- the hour ---------------------------------------------------------------------------------------


@dataclass
class Hour:
    """What the hour's deliveries told, per account."""

    statuses: dict[str, Counter[str]]
    reasons: dict[str, Counter[str]]
    twice: Counter[str]  # account -> messages delivered a second time
    dispatched: int
    first_minute: int
    down_from: float
    down_until: float


def run_the_hour(stack: HostedStack, down: HostedPerson) -> Hour:
    """MINUTES minutes of dispatch and delivery, every DUPLICATE_EVERY-th message delivered twice, the down
    account's site unreachable in DOWN_MINUTES."""
    hour = Hour(defaultdict(Counter), defaultdict(Counter), Counter(), 0, stack.minute, 0.0, 0.0)
    messages = itertools.count()

    def deliver_twice(message: dict[str, Any]) -> bool:
        if next(messages) % DUPLICATE_EVERY:
            return False
        hour.twice[json.loads(message["Body"])["account"]] += 1
        return True

    for minute in range(MINUTES):
        if minute == DOWN_MINUTES.start:
            down.site.set_unreachable(True)
            hour.down_from = stack.clock()
        if minute == DOWN_MINUTES.stop:
            down.site.set_unreachable(False)
            hour.down_until = stack.clock()
        result: MinuteResult = stack.run_minute(duplicate=deliver_twice)
        hour.dispatched += result.dispatch.sent
        outcome: Outcome
        for batch in result.batches:
            assert batch.retry == []  # no failure of ours: SQS never had to deliver again
            for outcome in batch.outcomes:
                hour.statuses[outcome.account][outcome.status] += 1
                if outcome.reason:
                    hour.reasons[outcome.account][f"{outcome.status}:{outcome.reason}"] += 1
    return hour


def check_every_message_ran_once(hour: Hour, people: list[HostedPerson], bad: HostedPerson, down: HostedPerson) -> None:
    """Twelve runs each, a second delivery is only a "duplicate"."""
    ids = [person.account_id for person in people]
    assert len(set(ids)) == ACCOUNTS and hour.dispatched == ACCOUNTS * RUNS
    assert sum(hour.twice.values()) >= ACCOUNTS * RUNS // DUPLICATE_EVERY  # the share really happened
    assert set(hour.statuses) == set(ids)
    for person in people:
        expected = Counter({"ran": RUNS, "duplicate": hour.twice[person.account_id]})
        if person is bad:
            expected.update({"failed": 1, "skipped": RUNS - 1, "ran": -RUNS})
        if person is down:
            expected.update({"failed": 4, "ran": -4})  # four of its runs fell in the twenty minutes
        assert hour.statuses[person.account_id] == +expected, person.number
    assert hour.reasons[bad.account_id] == {"failed:bad_credentials": 1, "skipped:bad_credentials": RUNS - 1}
    assert hour.reasons[down.account_id] == {"failed:nightscout_unreachable": 4}
    assert {account for account, found in hour.reasons.items() if found} == {bad.account_id, down.account_id}


def check_linkup_asked_once(stack: HostedStack, people: list[HostedPerson], bad: HostedPerson) -> None:
    """One login per account, one graph per run, nothing for a second delivery."""
    assert stack.logins_by_email() == {person.email: 1 for person in people}
    asked = requests_by_email(stack)
    assert set(asked) == {person.email for person in people}
    usual = Counter({"login": 1, "/llu/connections": 1, "graph": RUNS})
    for person in people:
        assert asked[person.email] == (Counter({"login": 1}) if person is bad else usual), person.number


def check_dispatcher_read_only_the_due(table: TableCalls, first_minute: int) -> None:
    """The dispatcher read only the partitions due in each minute, never the registry."""
    due = table.due_queries()
    assert sorted(due) == list(range(first_minute, first_minute + MINUTES))
    for minute, partitions in due.items():
        assert sorted(partitions) == sorted(partitions_due(minute)) and len(partitions) == len(INTERVALS)
    assert not [call for call in table.calls if call[1] == "Scan"]
    assert not [call for call in table.calls if call[1] == "Query" and call[2] == REGISTRY_PK]


def check_sites(
    stack: HostedStack, people: list[HostedPerson], bad: HostedPerson, down: HostedPerson, hour: Hour
) -> None:
    """Every site holds its own patient's readings, each once, none missing."""
    polls: dict[str, list[ServedGraph]] = defaultdict(list)
    for poll in stack.llu.served:
        polls[poll.patient_id].append(poll)
    problems: dict[int, list[str]] = {}
    for person in people:

        def unreachable(at: float, person: HostedPerson = person) -> bool:
            return person is down and hour.down_from <= at < hour.down_until

        found = reading_problems(stack, person, polls[person.patient_id], unreachable)
        if found:
            problems[person.number] = found[:3]
    assert problems == {}
    assert bad.site.sgv_entries() == [] and polls[bad.patient_id] == []
    assert all(len(person.site.sgv_entries()) > RUNS for person in people if person is not bad)
    assert any(p.time >= hour.down_until for p in polls[down.patient_id])  # it did come back within the hour


def check_incidents_stay_theirs(
    stack: HostedStack, people: list[HostedPerson], bad: HostedPerson, down: HostedPerson
) -> None:
    """The broken accounts' incidents are theirs: in their own partitions, on their own sites."""
    assert incident_kinds(stack, bad) == {"bad_credentials": True}
    (told,) = bad.site.announcements()
    assert told["eventType"] == "Announcement" and "linkup-sync" in told["notes"]
    # twenty minutes without readings stays below STALE_AFTER_MINUTES (30): no incident, nothing to tell
    assert incident_kinds(stack, down) == {} and down.site.announcements() == []
    assert [p.number for p in people if p is not bad and p.site.announcements()] == []
    assert [p.number for p in people if p is not bad and incident_kinds(stack, p)] == []


@pytest.mark.slow
def test_a_thousand_accounts_for_an_hour_each_get_their_readings_once_and_keep_their_troubles(aws: None) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    with hosted() as stack:
        people = [stack.add_person() for _ in range(ACCOUNTS)]
        bad, down = people[BAD], people[DOWN]
        stack.llu.set_password(bad.email, "changed in the app")  # the stored password is now wrong
        table = TableCalls.watch(stack)
        set_up = time.perf_counter() - wall

        hour = run_the_hour(stack, down)
        hour_s = time.perf_counter() - wall - set_up

        check_every_message_ran_once(hour, people, bad, down)
        check_linkup_asked_once(stack, people, bad)
        check_dispatcher_read_only_the_due(table, hour.first_minute)
        check_sites(stack, people, bad, down, hour)
        check_incidents_stay_theirs(stack, people, bad, down)
        # credentials: each account's ciphertext was decrypted once, the wrong one again at each run
        assert stack.worker.vault.decrypts == ACCOUNTS - 1 + RUNS

    print(
        f"\n{ACCOUNTS} accounts x {MINUTES} virtual minutes: set-up {set_up:.0f} s, hour {hour_s:.0f} s, "
        f"all {time.perf_counter() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s CPU"
    )


# --- one rule at a time --------------------------------------------------------------------------------


def snapshot(stack: HostedStack, people: list[HostedPerson]) -> tuple[Any, ...]:
    """Everything a run could change: LibreLink Up's log, every site, every item of the table."""
    items = stack.ddb.scan(TableName=stack.table, ConsistentRead=True)["Items"]  # the test's look, not the stack's
    return len(stack.llu.requests), [(p.site.entries, p.site.treatments) for p in people], items


def test_a_message_delivered_twice_changes_nothing(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with hosted() as stack:
        people = [stack.add_person() for _ in range(5)]
        bodies: list[str] = []

        def twice(message: dict[str, Any]) -> bool:
            bodies.append(message["Body"])
            return True

        unchanged: list[int] = []
        invoke = stack.invoke

        def watched(messages: list[dict[str, Any]]) -> Any:
            before = snapshot(stack, people)
            result = invoke(messages)
            if result.outcomes and all(outcome.status == "duplicate" for outcome in result.outcomes):
                assert snapshot(stack, people) == before
                unchanged.append(len(result.outcomes))
            return result

        monkeypatch.setattr(stack, "invoke", watched)
        statuses: Counter[str] = Counter()
        for _ in range(10):  # two runs of each account
            statuses += stack.run_minute(duplicate=twice).statuses
        assert statuses == {"ran": 10, "duplicate": 10} and sum(unchanged) == 10

        # SQS hands a message out again minutes later (a worker died before deleting it): still nothing
        recent = [body for body in bodies if stack.minute - json.loads(body)["due"] < 5]  # not late yet
        assert recent
        before = snapshot(stack, people)
        for body in recent:
            stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
        again = [outcome.status for batch in stack.deliver() for outcome in batch.outcomes]
        assert again == ["duplicate"] * len(recent) and snapshot(stack, people) == before

        asked = requests_by_email(stack)
        assert all(asked[p.email] == {"login": 1, "/llu/connections": 1, "graph": 2} for p in people)
        assert all(reading_problems(stack, p, served(stack, p), lambda _at: False) == [] for p in people)


def served(stack: HostedStack, person: HostedPerson) -> list[ServedGraph]:
    return [poll for poll in stack.llu.served if poll.patient_id == person.patient_id]


def due_now(stack: HostedStack) -> int:
    """Dispatch the first minute from now in which some account is due (without delivering); its minute."""
    while not stack.dispatcher.dispatch(stack.minute).due:
        stack.clock.advance(60)
    return stack.minute


def delivered(stack: HostedStack) -> dict[str, str]:
    return {outcome.account: outcome.status for batch in stack.deliver() for outcome in batch.outcomes}


def last_due(stack: HostedStack, account_id: str) -> int | None:
    account = stack.registry.get(account_id)
    assert account is not None
    return account.last_due


def test_a_message_older_than_its_interval_is_dropped(aws: None) -> None:
    with hosted() as stack:
        people = [stack.add_person() for _ in range(5)]
        due_now(stack)
        stack.clock.advance(6 * 60)  # more than an interval (5 minutes) after the minute it was due
        late = delivered(stack)
        assert late and set(late.values()) == {"late"}
        assert stack.llu.requests == [] and all(person.site.requests == [] for person in people)
        assert all(last_due(stack, account) is None for account in late)  # nothing was claimed

        # a whole interval late is still within the minute of grace the dispatcher's delays need
        due = due_now(stack)
        stack.clock.advance(5 * 60)
        in_time = delivered(stack)
        assert in_time and set(in_time.values()) == {"ran"}
        assert all(last_due(stack, account) == due for account in in_time)


def test_an_account_removed_while_its_message_is_on_the_way_does_nothing(aws: None) -> None:
    with hosted() as stack:
        people = [stack.add_person(interval=1) for _ in range(4)]  # every one due every minute
        gone = people[2]
        assert stack.dispatcher.dispatch(stack.minute).due == 4
        account = stack.registry.get(gone.account_id)
        assert account is not None
        stack.registry.remove(account)
        stack.clock.advance(59)
        assert delivered(stack) == {p.account_id: "duplicate" if p is gone else "ran" for p in people}
        assert gone.email not in requests_by_email(stack) and gone.site.requests == []
        assert stack.registry.get(gone.account_id) is None
        assert stack.registry.items(account.state_key) == []  # no state written back for it
        assert stack.registry.items(incidents_partition(gone.account_id)) == []
        stack.clock.advance(1)
        for _ in range(2):  # and it stays gone
            result = stack.run_minute()
            assert result.dispatch.due == 3 and result.statuses == {"ran": 3}
