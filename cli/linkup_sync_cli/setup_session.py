"""`linkup-sync setup`'s session: the answers so far, how a step is repeated, the secret's two forms,
and running sam (argv and environment without a password or token)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from linkup_sync.secret_format import credentials_from_secret
from linkup_sync.settings import Settings

from .setup_deploy import Runner, child_environment, describe_run, invoke_command, run_program, run_result
from .setup_prompts import Asker, SetupAborted, StepFailed

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NEEDS_PERSON = 2
PASSWORD_TRIES = 3  # LibreLink Up locks an account after a few wrong passwords: stop well before
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")  # the template's AlarmEmail pattern
STACK_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
AWS_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")

# --- the answers -------------------------------------------------------------------------------------


@dataclass
class Person:
    patient_id: str
    initials: str
    url: str = ""
    token: str = field(default="", repr=False)
    api_v3: str = ""  # the person's own NIGHTSCOUT_API_V3 in the secret, kept when the secret is rewritten


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


def step(s: Session, title: str, body: Callable[[], Any]) -> Any:
    """Run one step until its answers pass; the reason of each failure is shown before it is asked again."""
    s.say(f"\n== {title}")
    while True:
        try:
            return body()
        except StepFailed as failed:
            s.say(f"✘ {failed.reason}")
            s.say("Let's try that step again.")


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
            **({"NIGHTSCOUT_API_V3": p.api_v3} if p.api_v3 else {}),
        }
    else:
        value = {
            "LINK_UP_USERNAME": username,
            "LINK_UP_PASSWORD": password,
            "TARGETS": [
                {
                    "LINK_UP_CONNECTION": p.patient_id,
                    "NIGHTSCOUT_URL": p.url,
                    "NIGHTSCOUT_API_TOKEN": p.token,
                    **({"NIGHTSCOUT_API_V3": p.api_v3} if p.api_v3 else {}),
                }
                for p in people
            ],
        }
    credentials_from_secret(value, version="setup", secret_id=None)  # the function's own checks
    return value


def people_of(secret: Mapping[str, Any]) -> list[Person]:
    """The people of a stored secret: each TARGETS entry, or the flat form's one person."""
    listed = secret.get("TARGETS")
    entries = [t for t in listed if isinstance(t, dict)] if isinstance(listed, list) else [secret]
    return [
        Person(
            str(entry.get("LINK_UP_CONNECTION", "")),
            "",
            str(entry.get("NIGHTSCOUT_URL", "")),
            str(entry.get("NIGHTSCOUT_API_TOKEN", "")),
            str(entry.get("NIGHTSCOUT_API_V3", "")),
        )
        for entry in entries
    ]


# --- the whole set-up --------------------------------------------------------------------------------


def sam_run(s: Session, argv: Sequence[str], *, capture: bool = False) -> str:
    s.say("$ " + " ".join(argv))
    code, output = s.runner(argv, s.checkout, child_environment(s.env), capture)
    if code != 0:
        raise SetupAborted(f"`{' '.join(argv[:2])}` failed (exit {code}); its output above says why.")
    return output


def first_run(s: Session, stack: str, region: str, sites: Sequence[str]) -> int:
    s.say("\n== The first run")
    output = sam_run(s, invoke_command(s.sam, stack, region), capture=True)
    result = run_result(output)
    if result is None:
        s.say("✘ The function's answer could not be read:\n" + output[-2000:])
        return EXIT_FAILED
    return EXIT_OK if describe_run(result, sites, s.out) else EXIT_FAILED


def people_sites(value: Mapping[str, Any]) -> list[str]:
    """The Nightscout address of each person of a secret's value."""
    return [person.url for person in people_of(value)]
