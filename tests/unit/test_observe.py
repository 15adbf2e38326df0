"""What the incident desk reads from one run (incidents/desk.py: observe, wants_fresh_secret), on typed
reports (issue 25): the run's own failure, the breaker that held it back, and each person's outcome."""

from __future__ import annotations

from linkup_sync import errors
from linkup_sync.incidents.desk import observe, wants_fresh_secret
from linkup_sync.model import Target
from linkup_sync.report import RunReport, TargetReport
from linkup_sync.state.model import AccountState

SITE = Target(patient_id=None, nightscout_url="https://ns.example.org", nightscout_token="t")


def kinds(report: RunReport, exc: BaseException | None = None, *, multi: bool = False) -> list[tuple[str, str]]:
    return [i.key for i in observe(report, exc, multi=multi, stale_after_minutes=30, version="4.16.0").seen]


def test_a_healthy_run_solves_the_account_incidents_and_the_stale_one() -> None:
    report = RunReport(targets=[TargetReport(patient="abcd1234", graph_ok=True, newest_reading_age_s=60.0)])
    observation = observe(report, None, multi=False, stale_after_minutes=30)
    assert observation.seen == []
    assert observation.solved == {("nightscout_token", ""), ("stale", "")}
    assert observation.solved_scopes == {""}


def test_the_runs_own_failure_is_seen_once_even_when_a_target_carries_it() -> None:
    refused = errors.LinkUpBadCredentials()
    assert kinds(RunReport(), refused) == [("bad_credentials", "")]
    gone = errors.LinkUpPatientNotFound("p1", [])
    report = RunReport(targets=[TargetReport(patient="abcd1234", target=SITE, failure=gone)])
    assert kinds(report, gone) == [("patient_gone", "")]  # from the target only, not twice
    assert kinds(report, gone, multi=True) == [("patient_gone", "abcd1234")]


def test_a_breaker_that_needs_a_person_keeps_its_incident_open() -> None:
    held = RunReport(skipped="action_required", needs_person=True)
    account = AccountState(login_block_reason="action_required:tou")
    [incident] = observe(held, None, multi=False, stale_after_minutes=30, account=account).seen
    assert incident.kind == "action_required" and "Terms of Use" in incident.todo
    assert kinds(RunReport(skipped="version", needs_person=True)) == [("version", "")]
    assert kinds(RunReport(skipped="bad_credentials", needs_person=True)) == [("bad_credentials", "")]
    assert kinds(RunReport(skipped="rate_limited", needs_person=False)) == []  # passes by itself


def test_stale_data_and_the_people_of_a_stack_serving_several() -> None:
    report = RunReport(
        targets=[
            TargetReport(patient="aaaa0000", initials="A.B.", graph_ok=True, newest_reading_age_s=31 * 60.0),
            TargetReport(patient="bbbb1111", initials="C.D.", graph_ok=False, failure=errors.NightscoutUnauthorized()),
        ]
    )
    observation = observe(report, None, multi=True, stale_after_minutes=30)
    assert [(i.key, i.person) for i in observation.seen] == [
        (("stale", "aaaa0000"), "A.B."),
        (("nightscout_token", "bbbb1111"), "C.D."),
    ]
    assert observation.people == {"aaaa0000": "A.B."}  # only those LibreLink Up answered for
    assert observation.solved == {("nightscout_token", "aaaa0000")}
    assert observation.solved_scopes == {"", "aaaa0000"}


def test_a_refused_secret_is_read_afresh() -> None:
    assert wants_fresh_secret(RunReport(skipped="bad_credentials"), None)
    assert wants_fresh_secret(RunReport(), errors.LinkUpBadCredentials())
    forbidden = errors.NightscoutRejected("HTTP 403: forbidden")
    assert wants_fresh_secret(RunReport(targets=[TargetReport(failure=forbidden)]), None)
    assert not wants_fresh_secret(RunReport(targets=[TargetReport(failure=errors.NightscoutUnreachable("x"))]), None)
    assert not wants_fresh_secret(RunReport(skipped="rate_limited"), errors.LinkUpTimeout())
