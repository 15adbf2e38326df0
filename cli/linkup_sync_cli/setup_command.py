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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from linkup_sync.errors import ConfigError, LinkupSyncError
from linkup_sync.settings import Settings

from .adapters import describe_aws_failure
from .output import PROG
from .setup_change import change_deployed
from .setup_deploy import (
    PARAMETER_DEFAULTS,
    Runner,
    Saved,
    deploy_command,
    given_overrides,
    load_answers,
    run_program,
    save_answers,
    stack_outputs,
    store_secret,
)
from .setup_prompts import Asker, SetupAborted
from .setup_session import EXIT_NEEDS_PERSON, Session, first_run, people_sites, sam_run, secret_value, step
from .setup_steps import (
    nightscout_step,
    shell_region,
    step_alerts,
    step_linkup,
    step_people,
    step_stack,
)

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


def full_setup(s: Session, saved: Saved | None) -> int:
    tries = [0]
    username, password, ticket, client = step(s, "1. LibreLink Up", lambda: step_linkup(s, tries))
    people = step_people(s, client, ticket)
    for person in people:
        title = "2. Nightscout" + (f" for {person.initials}" if len(people) > 1 else "")
        step(s, title, nightscout_step(s, person, len(people) > 1))
    email = step(s, "3. Alerts", lambda: step_alerts(s))
    stack, region = step(s, "4. Where in AWS", lambda: step_stack(s, saved))

    # A second set-up keeps what the first one saved (a schedule, the alert e-mail) unless answered anew.
    overrides = {**(saved.overrides if saved is not None else {}), **given_overrides(s.env)}
    assert s.settings is not None
    overrides.pop("LinkUpRegion", None)
    if ticket.region.upper() != PARAMETER_DEFAULTS["LinkUpRegion"]:
        overrides["LinkUpRegion"] = ticket.region.upper()  # the region the login ended in, whatever was given
    if email:
        overrides["AlarmEmail"] = email
    value = secret_value(username, password, people)
    save_answers(s.checkout / "samconfig.toml", Saved(stack, region, overrides))

    s.say("\n== Deploying (a few minutes)")
    sam_run(s, [s.sam, "build"])
    sam_run(s, deploy_command(s.sam, stack, region, overrides))
    outputs = stack_outputs(stack, region) or {}
    secret_arn = outputs.get("CredentialsSecretArn")
    if not secret_arn:
        raise SetupAborted(f"the stack {stack} in {region} has no output CredentialsSecretArn after the deploy.")
    store_secret(secret_arn, region, value)
    s.say("✔ Stored the credentials in the stack's secret (not shown).")
    code = first_run(s, stack, region, people_sites(value))
    if email:
        s.say(
            f"\nAWS has sent an e-mail to {email} (from AWS Notifications) to confirm the alerts: click the "
            "link 'Confirm subscription' in it, or no alert will reach you."
        )
    s.say(f"\nDone. linkup-sync runs every few minutes in {region}; `make update` brings a newer release.")
    return code


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
                    return change_deployed(session, stack, region, outputs, saved, full_setup)
        out.write("linkup-sync set-up: a few questions, each checked before the next. Ctrl-C stops at any time.\n")
        return full_setup(session, saved)
    except SetupAborted as stop:
        err.write(f"{PROG} setup: stopped: {stop.message}\n")
        return EXIT_NEEDS_PERSON
    except LinkupSyncError as exc:  # LibreLink Up, Nightscout, the secret's rules: the message says what to do
        err.write(f"{PROG} setup: stopped: {exc.message}\nRun `make setup` again once it is fixed.\n")
        return EXIT_NEEDS_PERSON
    except Exception as exc:
        text = describe_aws_failure(exc)  # expired credentials, access denied, no region: no traceback
        if text is None:
            raise
        err.write(f"{PROG} setup: stopped: {text}\nRun `make setup` again once it is fixed.\n")
        return EXIT_NEEDS_PERSON
    except KeyboardInterrupt:
        err.write(f"\n{PROG} setup: stopped; nothing more was changed.\n")
        return 130
