"""`linkup-sync setup` (`make setup`): from a checkout to readings in Nightscout, every answer checked.

1. LibreLink Up: the e-mail and password (not echoed); one login, following a region redirect; terms to
   accept are explained; the people the account follows are listed by initials and chosen.
2. Per person: the Nightscout address and token, checked with doctor's own checks.
3. An e-mail address for alerts (optional). 4. Stack name and AWS region (checked with AWS).
Then `sam build`, `sam deploy` (no questions: only the answers that differ from the defaults, saved in
samconfig.toml), the secret stored, one run of the function told in words.

On a deployed stack it offers to change the password, a token or the people without a redeploy.
Nothing here prints a password or a token, nor puts one on a command line.
"""

from __future__ import annotations

import argparse
import getpass
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from linkup_sync.errors import (
    ConfigError,
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpError,
    LinkUpLocked,
    LinkUpVersionRejected,
)
from linkup_sync.settings import Settings, credentials_from_secret

from .doctor_nightscout import check_nightscout
from .output import PROG
from .reporter import Reporter
from .setup_deploy import (
    PARAMETER_DEFAULTS,
    Runner,
    Saved,
    child_environment,
    deploy_command,
    describe_run,
    given_overrides,
    invoke_command,
    load_answers,
    read_secret,
    run_program,
    run_result,
    save_answers,
    stack_outputs,
    store_secret,
)
from .setup_prompts import Asker, SetupAborted, StepFailed

if TYPE_CHECKING:
    from linkup_sync.ports import Connection, Ticket

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NEEDS_PERSON = 2
PASSWORD_TRIES = 3  # LibreLink Up locks an account after a few wrong passwords: stop well before
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")  # the template's AlarmEmail pattern
_STACK_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_AWS_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")

SETUP_HELP = """\
Sets linkup-sync up in AWS, one checked step at a time (run it as `make setup` in the checkout):

  1. the LibreLink Up e-mail and password (not shown): one login, region and terms explained, then
     the people the account follows, by initials: choose one or several;
  2. for each person, the Nightscout address and token, checked as `doctor` checks them;
  3. an e-mail address for alerts (optional); 4. the stack's name and AWS region.

Then `sam build` and `sam deploy` without questions (the answers that differ from the defaults are
saved in samconfig.toml, so `make deploy` runs unattended later), the secret is stored, and the
function runs once: you see what it uploaded. AWS sends a confirmation e-mail for the alerts: click
its link. Run again on a deployed stack, it changes the password, a token or the people without a
redeploy.

Every answer can come from an environment variable: LINK_UP_USERNAME, LINK_UP_PASSWORD,
LINK_UP_CONNECTION (patientIds, comma-separated), NIGHTSCOUT_URL, NIGHTSCOUT_API_TOKEN (one person)
or TARGETS (JSON, as in the secret), AlarmEmail, STACK_NAME, AWS_REGION, SETUP_CHANGE
(password|token|people|all on a deployed stack), and any template parameter by its name (e.g.
ScheduleRate) or its setting's name (e.g. LINK_UP_REGION). With --yes nothing is asked.
Passwords and tokens are never shown, logged or put on a command line."""


def add_setup_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    setup = commands.add_parser(
        "setup",
        help="set linkup-sync up in AWS step by step, every answer checked (make setup)",
        description=SETUP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    setup.add_argument("--yes", action="store_true", help="ask nothing: every answer from environment variables")
    setup.add_argument(
        "--checkout", metavar="DIR", default=".", help="the linkup-sync checkout to build and deploy (default: .)"
    )
    setup.add_argument("--sam", metavar="PROGRAM", default="sam", help="the sam CLI to run (default: sam)")
    setup.add_argument("--now", type=float, help=argparse.SUPPRESS)


# --- the answers -------------------------------------------------------------------------------------


@dataclass
class Person:
    patient_id: str
    initials: str
    url: str = ""
    token: str = field(default="", repr=False)


@dataclass
class Session:
    """Everything one set-up needs, injectable for the tests."""

    asker: Asker
    env: Mapping[str, str]
    out: TextIO
    clock: Callable[[], float]
    checkout: Path
    sam: str
    runner: Runner = run_program
    settings: Settings | None = None

    def say(self, text: str = "") -> None:
        self.asker.say(text)


def _step(s: Session, title: str, body: Callable[[], Any]) -> Any:
    """Run one step until its answers pass; the reason of each failure is shown before it is asked again."""
    s.say(f"\n== {title}")
    while True:
        try:
            return body()
        except StepFailed as failed:
            s.say(f"✘ {failed.reason}")
            s.say("Let's try that step again.")


# --- 1. LibreLink Up ---------------------------------------------------------------------------------


def _client(s: Session) -> Any:
    from linkup_sync.librelinkup.client import LinkUpClient

    settings = s.settings
    assert settings is not None
    return LinkUpClient(
        url_template=settings.api_url_template,
        version=settings.version,
        auto_accept_terms=settings.auto_accept_terms,
    )


def _login(s: Session, client: Any, username: str, password: str) -> Ticket:
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
        check=lambda v: None if _EMAIL_RE.match(v) else "this is not an e-mail address.",
    )
    password = s.asker.answer("LINK_UP_PASSWORD", "LibreLink Up password (not shown)", secret=True)
    client = _client(s)
    try:
        ticket = _login(s, client, username, password)
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


def _targets_from_env(s: Session) -> dict[str, Mapping[str, Any]]:
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
    from linkup_sync.ports import Target

    assert s.settings is not None
    given = _targets_from_env(s).get(person.patient_id) if several else None
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
    check_nightscout(report, target, s.settings.api_v3, s.settings.sensor_start, s.clock, "", s.settings.allow_http)
    if report.failed or not report.passed:
        if given is not None:
            raise SetupAborted(f"the Nightscout entry of {person.initials} in TARGETS failed the checks above.")
        s.asker.spend(*names)
        raise StepFailed("The Nightscout checks above failed: fix what the ✘ line says.")
    from linkup_sync.nightscout.url import normalize_nightscout_url

    person.url = normalize_nightscout_url(url, allow_http=s.settings.allow_http)
    person.token = token


def _nightscout_step(s: Session, person: Person, several: bool) -> Callable[[], None]:
    return lambda: step_nightscout(s, person, several)


# --- 3. and 4. alerts, stack and region --------------------------------------------------------------


def step_alerts(s: Session) -> str:
    email = s.asker.answer(
        "AlarmEmail",
        "E-mail address for alerts (a password rejected, no new readings, ...)",
        optional=True,
        check=lambda v: None if _EMAIL_RE.match(v) else "this is not an e-mail address.",
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
            None if _STACK_RE.match(v) else "a stack name has letters, digits and '-', starting with a letter."
        ),
    )
    region = s.asker.answer(
        "AWS_REGION",
        "AWS region to deploy to",
        default=(saved.region if saved else None) or shell_region(s.env),
        check=lambda v: None if _AWS_REGION_RE.match(v) else "this is not an AWS region name such as eu-central-1.",
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


# --- the secret --------------------------------------------------------------------------------------


def secret_value(username: str, password: str, people: Sequence[Person]) -> dict[str, Any]:
    """The flat form for one person (with its patientId), TARGETS for several; checked as the function
    checks it."""
    value: dict[str, Any]
    if len(people) == 1:
        p = people[0]
        value = {
            "LINK_UP_USERNAME": username,
            "LINK_UP_PASSWORD": password,
            "NIGHTSCOUT_URL": p.url,
            "NIGHTSCOUT_API_TOKEN": p.token,
            "LINK_UP_CONNECTION": p.patient_id,
        }
    else:
        value = {
            "LINK_UP_USERNAME": username,
            "LINK_UP_PASSWORD": password,
            "TARGETS": [
                {"LINK_UP_CONNECTION": p.patient_id, "NIGHTSCOUT_URL": p.url, "NIGHTSCOUT_API_TOKEN": p.token}
                for p in people
            ],
        }
    credentials_from_secret(value, version="setup", secret_id=None)  # the function's own checks
    return value


# --- the whole set-up --------------------------------------------------------------------------------


def _sam(s: Session, argv: Sequence[str], *, capture: bool = False) -> str:
    s.say("$ " + " ".join(argv))
    code, output = s.runner(argv, s.checkout, child_environment(s.env), capture)
    if code != 0:
        raise SetupAborted(f"`{' '.join(argv[:2])}` failed (exit {code}); its output above says why.")
    return output


def first_run(s: Session, stack: str, region: str, sites: Sequence[str]) -> int:
    s.say("\n== The first run")
    output = _sam(s, invoke_command(s.sam, stack, region), capture=True)
    result = run_result(output)
    if result is None:
        s.say("✘ The function's answer could not be read:\n" + output[-2000:])
        return EXIT_FAILED
    return EXIT_OK if describe_run(result, sites, s.out) else EXIT_FAILED


def _people_sites(value: Mapping[str, Any]) -> list[str]:
    if isinstance(value.get("TARGETS"), list):
        return [str(t.get("NIGHTSCOUT_URL", "")) for t in value["TARGETS"] if isinstance(t, dict)]
    return [str(value.get("NIGHTSCOUT_URL", ""))]


def full_setup(s: Session, saved: Saved | None) -> int:
    tries = [0]
    username, password, ticket, client = _step(s, "1. LibreLink Up", lambda: step_linkup(s, tries))
    people = step_people(s, client, ticket)
    for person in people:
        title = "2. Nightscout" + (f" for {person.initials}" if len(people) > 1 else "")
        _step(s, title, _nightscout_step(s, person, len(people) > 1))
    email = _step(s, "3. Alerts", lambda: step_alerts(s))
    stack, region = _step(s, "4. Where in AWS", lambda: step_stack(s, saved))

    overrides = given_overrides(s.env)
    assert s.settings is not None
    if ticket.region.upper() != PARAMETER_DEFAULTS["LinkUpRegion"]:
        overrides["LinkUpRegion"] = ticket.region.upper()  # the region the login ended in
    if email:
        overrides["AlarmEmail"] = email
    value = secret_value(username, password, people)
    save_answers(s.checkout / "samconfig.toml", Saved(stack, region, overrides))

    s.say("\n== Deploying (a few minutes)")
    _sam(s, [s.sam, "build"])
    _sam(s, deploy_command(s.sam, stack, region, overrides))
    outputs = stack_outputs(stack, region) or {}
    secret_arn = outputs.get("CredentialsSecretArn")
    if not secret_arn:
        raise SetupAborted(f"the stack {stack} in {region} has no output CredentialsSecretArn after the deploy.")
    store_secret(secret_arn, region, value)
    s.say("✔ Stored the credentials in the stack's secret (not shown).")
    code = first_run(s, stack, region, _people_sites(value))
    if email:
        s.say(
            f"\nAWS has sent an e-mail to {email} (from AWS Notifications) to confirm the alerts: click the "
            "link 'Confirm subscription' in it, or no alert will reach you."
        )
    s.say(f"\nDone. linkup-sync runs every few minutes in {region}; `make update` brings a newer release.")
    return code


def change_deployed(s: Session, stack: str, region: str, outputs: Mapping[str, str], saved: Saved | None) -> int:
    """A deployed stack: change the password, a token or the people, storing only the secret."""
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
        tries = [0]

        def new_password() -> str:
            pw = s.asker.answer("LINK_UP_PASSWORD", "The new LibreLink Up password (not shown)", secret=True)
            try:
                _login(s, _client(s), username, pw)
            except LinkUpBadCredentials:
                tries[0] += 1
                s.asker.spend("LINK_UP_PASSWORD")
                if tries[0] >= PASSWORD_TRIES:
                    raise SetupAborted(
                        "LibreLink Up rejected the password several times; nothing was changed."
                    ) from None
                raise StepFailed("LibreLink Up rejected this password.") from None
            except LinkUpError as exc:
                raise SetupAborted(exc.message) from None
            s.say("✔ LibreLink Up accepts the new password.")
            return pw

        value["LINK_UP_PASSWORD"] = _step(s, "The LibreLink Up password", new_password)
    elif choice == "token":
        people = _people_of(current)
        person = people[0]
        if len(people) > 1:
            s.say("People: " + ", ".join(f"{i} {p.patient_id}" for i, p in enumerate(people, start=1)))
            index = s.asker.answer(
                "SETUP_PERSON",
                "Whose token (number)",
                check=lambda v: None if v.isdigit() and 1 <= int(v) <= len(people) else "answer one of the numbers.",
            )
            person = people[int(index) - 1]

        def new_token() -> str:
            assert s.settings is not None
            token = s.asker.answer("NIGHTSCOUT_API_TOKEN", f"The new token for {person.url} (not shown)", secret=True)
            from linkup_sync.ports import Target

            report = Reporter(s.out)
            target = Target(patient_id=person.patient_id, nightscout_url=person.url, nightscout_token=token)
            check_nightscout(report, target, s.settings.api_v3, s.settings.sensor_start, s.clock, "", False)
            if report.failed or not report.passed:
                s.asker.spend("NIGHTSCOUT_API_TOKEN")
                raise StepFailed("The token failed the checks above.")
            return token

        token = _step(s, "The Nightscout token", new_token)
        # Only the token changes: every other key of the secret (NIGHTSCOUT_API_V3, ...) stays as it was.
        if isinstance(value.get("TARGETS"), list):
            value["TARGETS"] = [dict(t) for t in value["TARGETS"]]
            value["TARGETS"][people.index(person)]["NIGHTSCOUT_API_TOKEN"] = token
        else:
            value["NIGHTSCOUT_API_TOKEN"] = token
    else:  # the people followed
        client = _client(s)
        try:
            ticket = _login(s, client, username, password)
        except LinkUpError as exc:
            raise SetupAborted(
                f"LibreLink Up: {exc.message} Change the password first (SETUP_CHANGE=password)."
            ) from None
        people = step_people(s, client, ticket)
        known = {p.patient_id: p for p in _people_of(current)}
        for person in people:
            if person.patient_id in known and known[person.patient_id].url:
                person.url, person.token = known[person.patient_id].url, known[person.patient_id].token
                continue
            title = "Nightscout" + (f" for {person.initials}" if len(people) > 1 else "")
            _step(s, title, _nightscout_step(s, person, len(people) > 1))
        value = secret_value(username, password, people)
    credentials_from_secret(value, version="setup", secret_id=None)
    store_secret(secret_arn, region, value)
    s.say("✔ Stored the new secret (no redeploy needed; the next run uses it).")
    return first_run(s, stack, region, _people_sites(value))


def _people_of(secret: Mapping[str, Any]) -> list[Person]:
    if isinstance(secret.get("TARGETS"), list):
        return [
            Person(
                str(t.get("LINK_UP_CONNECTION", "")),
                "",
                str(t.get("NIGHTSCOUT_URL", "")),
                str(t.get("NIGHTSCOUT_API_TOKEN", "")),
            )
            for t in secret["TARGETS"]
            if isinstance(t, dict)
        ]
    return [
        Person(
            str(secret.get("LINK_UP_CONNECTION", "")),
            "",
            str(secret.get("NIGHTSCOUT_URL", "")),
            str(secret.get("NIGHTSCOUT_API_TOKEN", "")),
        )
    ]


def run_setup(
    args: argparse.Namespace,
    env: Mapping[str, str],
    clock: Callable[[], float],
    out: TextIO,
    err: TextIO,
    *,
    ask: Callable[[str], str] | None = None,
    ask_secret: Callable[[str], str] | None = None,
    runner: Runner | None = None,
) -> int:
    checkout = Path(args.checkout).resolve()
    if not (checkout / "template.yaml").exists():
        err.write(
            f"{PROG} setup: {checkout} is not a linkup-sync checkout (no template.yaml): run `make setup` in "
            "the folder of `git clone https://github.com/…/linkup-sync`.\n"
        )
        return EXIT_NEEDS_PERSON
    asker = Asker(env, out, yes=args.yes, ask=ask or input, ask_secret=ask_secret or getpass.getpass)
    session = Session(
        asker=asker, env=env, out=out, clock=clock, checkout=checkout, sam=args.sam, runner=runner or run_program
    )
    try:
        try:
            # LINK_UP_CONNECTION answers "whom to follow" here (several patientIds, numbers or 'all'), so it
            # goes into the secret, not into the settings.
            setting_env = {k: v for k, v in env.items() if k != "LINK_UP_CONNECTION"}
            session.settings = Settings.from_env(setting_env, need_aws=False)
        except ConfigError as exc:
            raise SetupAborted(exc.message) from None
        saved = load_answers(checkout / "samconfig.toml")
        outputs = None
        if saved is not None or env.get("STACK_NAME"):
            stack = env.get("STACK_NAME", "").strip() or (saved.stack if saved else "")
            region = env.get("AWS_REGION", "").strip() or (saved.region if saved else "") or shell_region(env) or ""
            if stack and region:
                outputs = stack_outputs(stack, region)
                if outputs and outputs.get("CredentialsSecretArn"):
                    return change_deployed(session, stack, region, outputs, saved)
        out.write("linkup-sync set-up: a few questions, each checked before the next. Ctrl-C stops at any time.\n")
        return full_setup(session, saved)
    except SetupAborted as stop:
        err.write(f"{PROG} setup: stopped: {stop.message}\n")
        return EXIT_NEEDS_PERSON
    except KeyboardInterrupt:
        err.write(f"\n{PROG} setup: stopped; nothing more was changed.\n")
        return 130
