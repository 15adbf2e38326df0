"""`linkup-sync setup`'s four steps, each checked before the next: LibreLink Up (one login, a region
redirect followed, terms explained, the people by initials), Nightscout (doctor's own checks), alerts,
and where in AWS."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from linkup_sync.errors import (
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpError,
    LinkUpLocked,
    LinkUpVersionRejected,
)

from .doctor_nightscout import check_nightscout
from .reporter import Reporter
from .setup_deploy import Saved
from .setup_prompts import SetupAborted, StepFailed
from .setup_session import (
    AWS_REGION_RE,
    EMAIL_RE,
    PASSWORD_TRIES,
    STACK_RE,
    Person,
    Session,
)

if TYPE_CHECKING:
    from linkup_sync.model import Connection, Ticket

# --- 1. LibreLink Up ---------------------------------------------------------------------------------


def linkup_client(s: Session) -> Any:
    from linkup_sync.librelinkup.client import LinkUpClient

    settings = s.settings
    assert settings is not None
    return LinkUpClient(
        url_template=settings.api_url_template,
        version=settings.version,
        auto_accept_terms=settings.auto_accept_terms,
    )


def login(s: Session, client: Any, username: str, password: str) -> Ticket:
    """One login (a second only after the person accepted terms, or for a newer app version)."""
    assert s.settings is not None
    adopted = False
    while True:
        try:
            ticket: Ticket = client.login(username, password, s.settings.region)
            return ticket
        except LinkUpActionRequired as exc:
            s.say(f"✘ {exc.message}")
            s.asker.confirm(
                "LibreLink Up wants new terms (or the privacy policy) accepted: open the LibreLink Up app on a "
                "phone, log in with this account and accept them."
            )
        except LinkUpVersionRejected as exc:
            minimum = exc.minimum_version
            if adopted or not (s.settings.version_auto and minimum and minimum.startswith("4.")):
                raise SetupAborted(exc.message) from None
            client.version, adopted = minimum, True


def step_linkup(s: Session, tries: list[int]) -> tuple[str, str, Ticket, Any]:
    username = s.asker.answer(
        "LINK_UP_USERNAME",
        "LibreLink Up e-mail address (the follower account of the LibreLink Up app)",
        check=lambda v: None if EMAIL_RE.match(v) else "this is not an e-mail address.",
    )
    password = s.asker.answer("LINK_UP_PASSWORD", "LibreLink Up password (not shown)", secret=True)
    client = linkup_client(s)
    try:
        ticket = login(s, client, username, password)
    except LinkUpBadCredentials:
        tries[0] += 1
        s.asker.spend("LINK_UP_USERNAME", "LINK_UP_PASSWORD")
        if tries[0] >= PASSWORD_TRIES:
            raise SetupAborted(
                "LibreLink Up rejected the e-mail and password several times. To keep the account from being "
                "locked, the set-up stops here: check them by logging in to the LibreLink Up app, then run "
                "the set-up again."
            ) from None
        raise StepFailed(
            "LibreLink Up rejected this e-mail address and password (check them in the LibreLink Up app). "
            f"{PASSWORD_TRIES - tries[0]} more tries before the set-up stops, to keep the account from a lockout."
        ) from None
    except LinkUpLocked as exc:
        raise SetupAborted(exc.message) from None
    except LinkUpError as exc:
        raise SetupAborted(f"LibreLink Up could not be used: {exc.message}") from None
    assert s.settings is not None
    where = (
        ""
        if ticket.region == s.settings.region
        else f" (LibreLink Up moved the login to region {ticket.region.upper()})"
    )
    s.say(f"✔ Logged in to LibreLink Up{where}.")
    return username, password, ticket, client


def step_people(s: Session, client: Any, ticket: Ticket) -> list[Person]:
    from linkup_sync.errors import LinkUpNoConnections

    connections: list[Connection] = client.connections(ticket)
    if not connections:
        raise SetupAborted(LinkUpNoConnections().message)
    people = [Person(c.patient_id, c.initials or "?") for c in connections]
    s.say(f"This account follows {len(people)} {'person' if len(people) == 1 else 'people'}:")
    for i, p in enumerate(people, start=1):
        s.say(f"  {i}  {p.initials}")
    if len(people) == 1 and not s.asker.from_env("LINK_UP_CONNECTION"):
        s.say(f"✔ {people[0].initials}'s readings will go to Nightscout.")
        return people

    def pick(text: str) -> list[Person] | str:
        chosen: list[Person] = []
        for part in [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]:
            if part.lower() == "all":
                return list(people)
            match = [p for p in people if p.patient_id == part.lower()]
            if part.isdigit() and 1 <= int(part) <= len(people):
                match = [people[int(part) - 1]]
            if not match:
                return f"'{part}' is not one of the numbers (1 to {len(people)}) or patientIds listed."
            chosen += [m for m in match if m not in chosen]
        return chosen or "choose at least one person."

    answer = s.asker.answer(
        "LINK_UP_CONNECTION",
        "Whose readings go to Nightscout? Their numbers, separated by commas, or 'all'",
        check=lambda v: picked if isinstance(picked := pick(v), str) else None,
    )
    result = pick(answer)
    assert not isinstance(result, str)
    s.say("✔ Chosen: " + ", ".join(p.initials for p in result))
    return result


# --- 2. Nightscout -----------------------------------------------------------------------------------


def targets_from_env(s: Session) -> dict[str, Mapping[str, Any]]:
    raw = s.asker.from_env("TARGETS")
    if raw is None:
        return {}
    import json

    try:
        entries = json.loads(raw)
    except ValueError:
        raise SetupAborted("TARGETS is not JSON: it must be the secret's TARGETS list.") from None
    if not isinstance(entries, list):
        raise SetupAborted("TARGETS must be a JSON list of objects, as in the secret.")
    return {
        str(e.get("LINK_UP_CONNECTION", "")).lower(): e
        for e in entries
        if isinstance(e, dict) and e.get("LINK_UP_CONNECTION")
    }


def step_nightscout(s: Session, person: Person, several: bool) -> None:
    from linkup_sync.model import Target

    assert s.settings is not None
    given = targets_from_env(s).get(person.patient_id) if several else None
    names = ("NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN")
    if given is not None:  # from TARGETS: checked like typed answers, never asked again from there
        url, token = str(given.get(names[0], "")), str(given.get(names[1], ""))
        s.say(f"Nightscout address for {person.initials}: {url} (from TARGETS)")
    else:
        who = f" for {person.initials}" if several else ""
        # Several people come from TARGETS in the environment; asked otherwise (never a made-up variable).
        url = s.asker.answer(
            names[0] if not several else f"TARGETS (the entry for {person.initials})",
            f"Nightscout address{who} (the https:// address that shows the glucose chart)",
        )
        token = s.asker.answer(
            names[1] if not several else f"TARGETS (the token for {person.initials})",
            f"Nightscout token{who}: the API_SECRET or an access token (not shown)",
            secret=True,
        )
    report = Reporter(s.out)
    target = Target(patient_id=person.patient_id, nightscout_url=url, nightscout_token=token)
    # allow_http=False: the deployed function always needs https (NIGHTSCOUT_ALLOW_HTTP is the command line's
    # own setting, for a Nightscout at home); plain http only to this machine, as everywhere.
    check_nightscout(report, target, s.settings.api_v3, s.settings.sensor_start, s.clock, "", False)
    if report.failed or not report.passed:
        if given is not None:
            raise SetupAborted(f"the Nightscout entry of {person.initials} in TARGETS failed the checks above.")
        s.asker.spend(*names)
        raise StepFailed("The Nightscout checks above failed: fix what the ✘ line says.")
    from linkup_sync.nightscout.url import normalize_nightscout_url

    person.url = normalize_nightscout_url(url, allow_http=False)
    person.token = token


def nightscout_step(s: Session, person: Person, several: bool) -> Callable[[], None]:
    return lambda: step_nightscout(s, person, several)


# --- 3. and 4. alerts, stack and region --------------------------------------------------------------


def step_alerts(s: Session) -> str:
    email = s.asker.answer(
        "AlarmEmail",
        "E-mail address for alerts (a password rejected, no new readings, ...)",
        optional=True,
        check=lambda v: None if EMAIL_RE.match(v) else "this is not an e-mail address.",
    )
    s.say("✔ Alerts go to " + email if email else "– No alert e-mail (add one later with make setup).")
    return email


def shell_region(env: Mapping[str, str]) -> str | None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if env.get(name, "").strip():
            return env[name].strip()
    try:
        import boto3

        region = boto3.session.Session().region_name
    except Exception:
        return None
    return str(region) if region else None


def step_stack(s: Session, saved: Saved | None) -> tuple[str, str]:
    stack = s.asker.answer(
        "STACK_NAME",
        "Name of the stack in AWS",
        default=saved.stack if saved else "linkup-sync",
        check=lambda v: (
            None if STACK_RE.match(v) else "a stack name has letters, digits and '-', starting with a letter."
        ),
    )
    region = s.asker.answer(
        "AWS_REGION",
        "AWS region to deploy to",
        default=(saved.region if saved else None) or shell_region(s.env),
        check=lambda v: None if AWS_REGION_RE.match(v) else "this is not an AWS region name such as eu-central-1.",
    )
    import boto3

    try:
        boto3.client("sts", region_name=region).get_caller_identity()
    except Exception as exc:
        s.asker.spend("AWS_REGION")
        raise StepFailed(
            f"AWS cannot be used in {region} ({type(exc).__name__}): check the AWS credentials "
            "(`aws sts get-caller-identity`) and the region name."
        ) from None
    s.say(f"✔ Stack {stack} in {region}.")
    return stack, region
