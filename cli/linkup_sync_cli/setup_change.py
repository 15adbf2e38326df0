"""`linkup-sync setup` on a deployed stack: a new password, a new token or other people, each checked,
stored in the secret only (no redeploy), then one run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from linkup_sync.errors import LinkUpBadCredentials, LinkUpError
from linkup_sync.secret_format import credentials_from_secret

from .doctor_nightscout import check_nightscout
from .reporter import Reporter
from .setup_deploy import Saved, read_secret, store_secret
from .setup_prompts import SetupAborted, StepFailed
from .setup_session import PASSWORD_TRIES, Person, Session, first_run, people_of, people_sites, secret_value, step
from .setup_steps import linkup_client, login, nightscout_step, step_people


def change_deployed(
    s: Session,
    stack: str,
    region: str,
    outputs: Mapping[str, str],
    saved: Saved | None,
    full_setup: Callable[[Session, Saved | None], int],
) -> int:
    """A deployed stack: change the password, a token or the people, storing only the secret. `all` (or a
    secret without a value) runs `full_setup`, passed in so that this module imports no module above it."""
    secret_arn = outputs["CredentialsSecretArn"]
    current = read_secret(secret_arn, region) or {}
    s.say(f"linkup-sync is deployed as the stack {stack} in {region}.")
    choice = s.asker.answer(
        "SETUP_CHANGE",
        "What to change: password, token, people, or all (set up and deploy again)",
        default="all" if not current else None,
        check=lambda v: (
            None if v.lower() in ("password", "token", "people", "all") else "answer password, token, people or all."
        ),
    ).lower()
    if choice == "all" or not current:
        return full_setup(s, saved)
    username = str(current.get("LINK_UP_USERNAME", ""))
    password = str(current.get("LINK_UP_PASSWORD", ""))
    value: dict[str, Any] = dict(current)
    if choice == "password":
        value["LINK_UP_PASSWORD"] = _new_password(s, username)
    elif choice == "token":
        _new_token(s, current, value)
    else:  # the people followed
        value = _new_people(s, current, username, password)
    credentials_from_secret(value, version="setup", secret_id=None)
    store_secret(secret_arn, region, value)
    s.say("✔ Stored the new secret (no redeploy needed; the next run uses it).")
    return first_run(s, stack, region, people_sites(value))


def _new_password(s: Session, username: str) -> str:
    """A new password LibreLink Up accepts, asked until it does or the tries are spent."""
    tries = [0]

    def new_password() -> str:
        pw = s.asker.answer("LINK_UP_PASSWORD", "The new LibreLink Up password (not shown)", secret=True)
        try:
            login(s, linkup_client(s), username, pw)
        except LinkUpBadCredentials:
            tries[0] += 1
            s.asker.spend("LINK_UP_PASSWORD")
            if tries[0] >= PASSWORD_TRIES:
                raise SetupAborted("LibreLink Up rejected the password several times; nothing was changed.") from None
            raise StepFailed("LibreLink Up rejected this password.") from None
        except LinkUpError as exc:
            raise SetupAborted(exc.message) from None
        s.say("✔ LibreLink Up accepts the new password.")
        return pw

    password: str = step(s, "The LibreLink Up password", new_password)
    return password


def _whose_token(s: Session, people: list[Person]) -> Person:
    if len(people) <= 1:
        return people[0]
    s.say("People: " + ", ".join(f"{i} {p.patient_id}" for i, p in enumerate(people, start=1)))
    index = s.asker.answer(
        "SETUP_PERSON",
        "Whose token (number)",
        check=lambda v: None if v.isdigit() and 1 <= int(v) <= len(people) else "answer one of the numbers.",
    )
    return people[int(index) - 1]


def _new_token(s: Session, current: Mapping[str, Any], value: dict[str, Any]) -> None:
    """One person's new Nightscout token, checked, into `value`."""
    people = people_of(current)
    person = _whose_token(s, people)

    def new_token() -> str:
        assert s.settings is not None
        token = s.asker.answer("NIGHTSCOUT_API_TOKEN", f"The new token for {person.url} (not shown)", secret=True)
        from linkup_sync.model import Target

        report = Reporter(s.out)
        target = Target(patient_id=person.patient_id, nightscout_url=person.url, nightscout_token=token)
        check_nightscout(report, target, s.settings.api_v3, s.settings.sensor_start, s.clock, "", False)
        if report.failed or not report.passed:
            s.asker.spend("NIGHTSCOUT_API_TOKEN")
            raise StepFailed("The token failed the checks above.")
        return token

    token = step(s, "The Nightscout token", new_token)
    # Only the token changes: every other key of the secret (NIGHTSCOUT_API_V3, ...) stays as it was.
    if isinstance(value.get("TARGETS"), list):
        value["TARGETS"] = [dict(t) for t in value["TARGETS"]]
        value["TARGETS"][people.index(person)]["NIGHTSCOUT_API_TOKEN"] = token
    else:
        value["NIGHTSCOUT_API_TOKEN"] = token


def _new_people(s: Session, current: Mapping[str, Any], username: str, password: str) -> dict[str, Any]:
    """The people followed now: the known ones keep their site, a new one is asked for."""
    client = linkup_client(s)
    try:
        ticket = login(s, client, username, password)
    except LinkUpError as exc:
        raise SetupAborted(f"LibreLink Up: {exc.message} Change the password first (SETUP_CHANGE=password).") from None
    people = step_people(s, client, ticket)
    known = {p.patient_id: p for p in people_of(current)}
    for person in people:
        if person.patient_id in known and known[person.patient_id].url:
            kept = known[person.patient_id]
            person.url, person.token, person.api_v3 = kept.url, kept.token, kept.api_v3
            continue
        title = "Nightscout" + (f" for {person.initials}" if len(people) > 1 else "")
        step(s, title, nightscout_step(s, person, len(people) > 1))
    return secret_value(username, password, people)
