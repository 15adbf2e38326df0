"""docs/troubleshooting.md, written from the error classes so that it cannot drift from what people see.

    python -m tools.troubleshooting [--check]

Every message on the page is produced here by the code that produces it in a run: the error classes of
linkup_sync.errors, built with example values, and for the settings and the secret the validating
functions themselves, fed a wrong value. What each message means and what to do is written next to
the class it belongs to (ENTRIES). tests/tools/test_troubleshooting.py fails when an error class has
no entry, or when the page differs from what this module writes.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from linkup_sync import errors
from linkup_sync.errors import (
    ConfigError,
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpBlocked,
    LinkUpLocked,
    LinkUpMaintenance,
    LinkUpMalformedResponse,
    LinkUpMissingHeader,
    LinkUpNoConnections,
    LinkUpPatientNotFound,
    LinkUpRateLimited,
    LinkUpRedirectLoop,
    LinkUpServerError,
    LinkupSyncError,
    LinkUpTimeout,
    LinkUpTooLarge,
    LinkUpUnauthorized,
    LinkUpUnreachable,
    LinkUpVersionContradicted,
    LinkUpVersionRejected,
    NightscoutRejected,
    NightscoutTooLarge,
    NightscoutUnauthorized,
    NightscoutUnreachable,
    SecretError,
    StateConflict,
    StateUnavailable,
)

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "troubleshooting.md"
ARN = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:linkup-sync-credentials-AbCdEf"
ANNA = "0227d7fa-ec29-4864-8882-2fc6471562c3"
BEN = "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13"
FLAT = {
    "LINK_UP_USERNAME": "follower@example.com",
    "LINK_UP_PASSWORD": "example password",
    "NIGHTSCOUT_URL": "https://my-site.example.com",
    "NIGHTSCOUT_API_TOKEN": "bridge-feedfacecafe0001",
}


# --- messages from the code that writes them -------------------------------------------------------------


def _secret_problem(secret: dict[str, object]) -> SecretError:
    from linkup_sync.secret_format import credentials_from_secret

    try:
        credentials_from_secret(secret, version="1", secret_id=ARN)
    except SecretError as exc:
        return exc
    raise AssertionError(f"the secret {sorted(secret)} was accepted")


def _url_problem(url: str) -> ConfigError:
    from linkup_sync.nightscout.url import normalize_nightscout_url
    from linkup_sync.runtime import NIGHTSCOUT_SETTINGS_UNUSABLE

    try:
        normalize_nightscout_url(url)
    except ValueError as exc:
        return ConfigError([str(exc)], heading=NIGHTSCOUT_SETTINGS_UNUSABLE)
    raise AssertionError(f"{url} was accepted")


def _v3_token_problem(token: str) -> ConfigError:
    from linkup_sync.nightscout.v3 import needs_subject_text
    from linkup_sync.runtime import NIGHTSCOUT_SETTINGS_UNUSABLE

    return ConfigError([needs_subject_text(token)], heading=NIGHTSCOUT_SETTINGS_UNUSABLE)


def _empty_secret() -> SecretError:
    """What SecretsManagerCredentials.get raises when Secrets Manager has no value for the secret."""
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    from linkup_sync.secrets import SecretsManagerCredentials

    class NoValue:
        def get(self, *_: object, **__: object) -> object:
            raise GetParameterError("ResourceNotFoundException: Secrets Manager can't find the specified secret value")

    source = SecretsManagerCredentials(ARN)
    source._provider = NoValue()
    try:
        source.get()
    except SecretError as exc:
        return exc
    raise AssertionError("an empty secret was read")


def _region_problem() -> ConfigError:
    from linkup_sync.settings import Settings

    try:
        Settings.from_env({"LINK_UP_REGION": "UK"}, need_aws=False, need_secret=False)
    except ConfigError as exc:
        return exc
    raise AssertionError("LINK_UP_REGION=UK was accepted")


def _no_aws_region() -> ConfigError:
    from linkup_sync.aws import NO_REGION

    return ConfigError([NO_REGION])


# --- the page ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    title: str
    examples: tuple[Callable[[], LinkupSyncError], ...]
    text: str  # what it means and what to do (Markdown)
    section: str


LLU, NS, SETUP, AWS = "LibreLink Up", "Nightscout", "Settings and the secret", "AWS and the state table"

ENTRIES: dict[type[LinkupSyncError], Entry] = {
    LinkUpBadCredentials: Entry(
        "Wrong e-mail address or password, or the wrong kind of account",
        (LinkUpBadCredentials,),
        "Use the login of the LibreLink Up app (the follower's), then update the secret (`make secret`): the "
        "new secret version allows one new login. From the command line, correct the password and run once "
        "with `--reset-login`; the message says so from the first rejected run on. Until then the runs are "
        "skipped with the same message (`skipped`: `bad_credentials`), and no login is tried, so a wrong "
        "password can never lock the account.",
        LLU,
    ),
    LinkUpActionRequired: Entry(
        "New terms of use, a new privacy policy, or an unverified e-mail address",
        (
            lambda: LinkUpActionRequired("tou", next_try=1_795_676_700),
            lambda: LinkUpActionRequired("pp"),
            lambda: LinkUpActionRequired("verifyEmail"),
        ),
        'Until then, the runs are skipped with "LibreLink Up is waiting for the person to act '
        "(action_required:tou); the next login is tried in N s. Open the LibreLink Up app and follow its "
        'request." Do what the app asks. The bridge tries to log in again at most once an hour; '
        "`linkup-sync doctor --reset-login` checks again at once. `LinkUpAutoAcceptTerms` = `true` lets the "
        "bridge accept new terms and privacy policies itself. E-mail verification is always left to you.",
        LLU,
    ),
    LinkUpLocked: Entry(
        "The account is locked",
        (lambda: LinkUpLocked(300),),
        'Until then, the runs are skipped with "The LibreLink Up account is locked; no login is tried for '
        'another N s." Wait, and update or remove the old password on your other devices. `--reset-login` '
        "does not lift a lockout: it stays until it has passed.",
        LLU,
    ),
    LinkUpVersionRejected: Entry(
        "LibreLink Up requires a newer app version",
        (lambda: LinkUpVersionRejected("4.17.0", "4.16.0"), lambda: LinkUpVersionRejected("5.0.0", "4.16.0")),
        'With the default `LINK_UP_VERSION=auto` you only see a warning such as "LibreLink Up now requires app '
        'version 4.17.0 (it refused 4.16.0); the bridge uses 4.17.0 from now on", and the uploads go on. The '
        "first message above is for a version you set yourself.\n\n"
        "`make deploy` runs `sam deploy` with the answers saved in `samconfig.toml`, so a version given once "
        "with `--parameter-overrides` is replaced by the saved one at the next `make deploy`. Change it where "
        'it stays: in `samconfig.toml`, in the line `parameter_overrides = "… LinkUpVersion=\\"4.17.0\\" …"` '
        "(or run `.venv-sam/bin/sam deploy --guided` and save the answers again), then `make deploy`.\n\n"
        'Until you do, the runs are skipped with "LibreLink Up refused app version 4.16.0; it is asked again '
        "in N s, or at once when LINK_UP_VERSION is changed (or set to 'auto').\" If the required version "
        "starts with 5 (the second message), Abbott has retired the API this bridge uses; no setting can fix "
        "that (the bridge still asks hourly, in case it was a mistake).",
        LLU,
    ),
    LinkUpVersionContradicted: Entry(
        "A version refusal that names no higher minimum",
        (lambda: LinkUpVersionContradicted(None, "4.16.0"),),
        "A passing fault on LibreLink Up's side, treated like a server error: the bridge pauses (the "
        "`server_error` back-off) and asks again. Nothing to do.",
        LLU,
    ),
    LinkUpUnauthorized: Entry(
        "The stored login was revoked",
        (LinkUpUnauthorized,),
        "The run logs in again once, in the same run. Nothing to do unless it repeats on every run; then "
        "open the LibreLink Up app with the follower account and check what it asks for.",
        LLU,
    ),
    LinkUpMissingHeader: Entry(
        "LibreLink Up expects a header this version does not send",
        (LinkUpMissingHeader,),
        "The run fails and every next run asks again (it never stops for good). Update linkup-sync; a newer "
        "`LINK_UP_VERSION` may also help.",
        LLU,
    ),
    LinkUpNoConnections: Entry(
        "The account follows nobody",
        (LinkUpNoConnections,),
        "Send the invitation from the sensor wearer's LibreLink app and accept it in the LibreLink Up app "
        "with the follower account. Every run asks again, so the bridge starts by itself once it is accepted.",
        LLU,
    ),
    LinkUpPatientNotFound: Entry(
        "`LINK_UP_CONNECTION` names someone the account does not follow",
        (lambda: LinkUpPatientNotFound(BEN, [ANNA], origin="setting"),),
        "`linkup-sync doctor` lists the patientIds with initials. In the `TARGETS` form, fix that entry; the "
        "other people keep getting their readings. A remembered patient that LibreLink Up no longer knows is "
        "forgotten, so the next run chooses again.",
        LLU,
    ),
    LinkUpRedirectLoop: Entry(
        "The account is in another region",
        (lambda: LinkUpRedirectLoop(["EU", "DE", "EU"]),),
        "Usually there is no message at all: linkup-sync follows LibreLink Up's redirect and remembers the "
        'region, so the bridge works. `linkup-sync doctor` still says "✘ LINK_UP_REGION: your account is in '
        'region EU2: set LINK_UP_REGION=EU2 (it is EU)". Set the `LinkUpRegion` parameter to that region. '
        "The message above appears only when the redirects go round in a circle.",
        LLU,
    ),
    LinkUpRateLimited: Entry(
        "LibreLink Up limits requests",
        (LinkUpRateLimited, lambda: LinkUpRateLimited(retry_after=600)),
        'The runs in between are skipped with "LibreLink Up asked us to slow down (rate_limited); this run '
        'skips it, the next try is in N s." The word in brackets is the reason: `rate_limited`, `blocked`, '
        "`maintenance`, `server_error`, `timeout` or `unreachable`. The pause starts at 2 minutes and doubles "
        "with each failure, up to 30 minutes; a `Retry-After` from LibreLink Up is honoured (at most 1 day).",
        LLU,
    ),
    LinkUpBlocked: Entry(
        "LibreLink Up's firewall blocks the requests",
        (lambda: LinkUpBlocked(430),),
        "The same pause as for a rate limit. If it lasts for days, LibreLink Up blocks the addresses of that "
        "AWS region: deploy the stack in another region.",
        LLU,
    ),
    LinkUpMaintenance: Entry(
        "LibreLink Up is down for maintenance",
        (LinkUpMaintenance,),
        "Nothing to do: the bridge pauses and tries again; readings missed meanwhile come from the 12-hour history.",
        LLU,
    ),
    LinkUpServerError: Entry(
        "LibreLink Up answers with a server error",
        (lambda: LinkUpServerError(502),),
        "Nothing to do unless it lasts for hours: the same pause as for a rate limit.",
        LLU,
    ),
    LinkUpTimeout: Entry(
        "LibreLink Up does not answer in time",
        (LinkUpTimeout,),
        "Nothing to do: every request is bounded in time, and the next run tries again.",
        LLU,
    ),
    LinkUpUnreachable: Entry(
        "LibreLink Up cannot be reached",
        (lambda: LinkUpUnreachable("the host name could not be resolved"),),
        "The part in brackets says what failed. Usually a passing network problem; if it stays, check that "
        "`LINK_UP_API_URL` is the default (`https://api-{region}.libreview.io`).",
        LLU,
    ),
    LinkUpTooLarge: Entry(
        "LibreLink Up sends more than the bridge reads",
        (lambda: LinkUpTooLarge("the answer of api-eu.libreview.io is larger than 4 MB, the most the bridge reads"),),
        "An answer is larger than any LibreLink Up sends (a graph is well under 100 kB), or inflates past the "
        "limit: something between the bridge and LibreLink Up is misbehaving. Nothing was stored; LibreLink Up "
        "is paused like for a server error and tried again. The limits: [limits](limits.md).",
        LLU,
    ),
    LinkUpMalformedResponse: Entry(
        "LibreLink Up sends something the bridge cannot read",
        (lambda: LinkUpMalformedResponse("the graph has no data"),),
        "Nothing was changed. The run fails and every next run asks again; if it persists, the API has "
        "changed: update linkup-sync.",
        LLU,
    ),
    NightscoutUnauthorized: Entry(
        "Nightscout refuses the token",
        (NightscoutUnauthorized,),
        "See [Nightscout token](nightscout-token.md). With API v3, a 401 means Nightscout does not know the "
        "access token (or the site's `API_SECRET` was changed, which changes every access token): copy the "
        "subject's current token from Admin Tools. A 403 names the missing permission, often "
        "`api:entries:update`. After a 401 or 403 the next run reads the secret again at once, so a fixed "
        "token is picked up by the very next run.",
        NS,
    ),
    NightscoutRejected: Entry(
        "Nightscout does not accept the readings",
        (lambda: NightscoutRejected("the site redirects to https: fix NIGHTSCOUT_URL to start with https://"),),
        "The part after the colon says why. A redirect to `https://` means `NIGHTSCOUT_URL` starts with "
        "`http://`: fix it in the secret.",
        NS,
    ),
    NightscoutUnreachable: Entry(
        "Nightscout cannot be reached",
        (lambda: NightscoutUnreachable("the host name could not be resolved"),),
        "The part in brackets says what failed: a name that does not resolve (a typing error in "
        "`NIGHTSCOUT_URL`), a refused connection, a TLS certificate problem, or no answer in time. Open the "
        "address in a browser. The state does not move while Nightscout is down, so nothing is lost within "
        "12 hours.",
        NS,
    ),
    NightscoutTooLarge: Entry(
        "Nightscout sends more than the bridge reads",
        (
            lambda: NightscoutTooLarge(
                "the answer of my-site.example.com is larger than 2 MB, the most the bridge reads"
            ),
        ),
        "An answer is larger than Nightscout sends for what the bridge asked (or inflates past the limit): the "
        "site, or a proxy in front of it, is misbehaving. Nothing was stored and the state does not move; when "
        "it was the read-back, the current reading is still uploaded and the gap follows on a later run. The "
        "limits are on the limits page (limits.md).",
        NS,
    ),
    ConfigError: Entry(
        "The settings cannot be used",
        (
            lambda: _v3_token_problem("the site's API_SECRET"),
            lambda: _v3_token_problem("0123456789abcdef0123456789abcdef01234567"),
            lambda: _url_problem("http://my-site.example.com"),
            lambda: _url_problem("my-site"),
            _region_problem,
            _no_aws_region,
        ),
        "Every problem is listed at once, so one round of fixes is enough. For API v3: make a subject as "
        "described under [Nightscout token](nightscout-token.md) and put its token in the secret, or go back "
        "to API v1 (`NightscoutApiV3` = `false`); a 40-hex-digit SHA-1 (what nightscout-librelink-up users "
        "have) works only with API v1. Missing `https://`, a trailing slash and a pasted `/api/v1` in "
        "`NIGHTSCOUT_URL` are cleaned up for you; `http://` and incomplete addresses are not. For the AWS "
        "region, set `AWS_REGION` (or `AWS_DEFAULT_REGION`) to the stack's region, for example "
        '`export AWS_REGION=eu-central-1`; boto3 alone says "You must specify a region".',
        SETUP,
    ),
    SecretError: Entry(
        "The secret is empty, incomplete or has a misspelt key",
        (
            _empty_secret,
            lambda: _secret_problem({**FLAT, "LINK_UP_CONNECTON": ANNA}),
            lambda: _secret_problem({**FLAT, "link_up_username": "follower@example.com"}),
            lambda: _secret_problem({"LINK_UP_USERNAME": "follower@example.com"}),
        ),
        "Run `make secret` (see [Set it up](setup.md)). No message ever suggests a command with the password "
        "in it. Fix a misspelt key's name: an ignored typing error in `LINK_UP_CONNECTION` would follow the "
        'first person the account follows. Until the secret is set after a deployment, expect the "needs '
        'you" alert within minutes, then "failing runs", and "no new readings"; each sends an OK e-mail once '
        "readings arrive.",
        SETUP,
    ),
    StateUnavailable: Entry(
        "The state table cannot be read or written",
        (lambda: StateUnavailable("ProvisionedThroughputExceededException"),),
        "Nothing is lost: the next run starts again from what the table holds. If it lasts, check that the "
        "stack's table still exists (the function's role may use only its own table).",
        AWS,
    ),
    StateConflict: Entry(
        "Two runs changed the state at the same moment",
        (StateConflict,),
        'Nothing to do. The same holds for "Another run is logging in to LibreLink Up right now; this run '
        'leaves it to that one.": two runs overlapped, and only one of them may log in.',
        AWS,
    ),
}

# Classes with no message of their own: bases that are never raised as such, and the wrapper that
# carries its cause's message (and appears as that cause above).
NOT_SHOWN: dict[str, str] = {
    "LinkupSyncError": "the base class",
    "LinkUpError": "the base class of the LibreLink Up errors",
    "NightscoutError": "the base class of the Nightscout errors",
    "NightscoutPartialUpload": "carries its cause's message: the Nightscout entries above",
}

INTRO = """\
# Troubleshooting

<!-- Written by `python -m tools.troubleshooting` from the error classes in
layers/linkup_sync/python/linkup_sync/errors.py; edit the tool, not this page. -->

Each problem below shows the message linkup-sync prints: in the function's logs (`make logs`), in the
output of `linkup-sync sync --once`, in `linkup-sync doctor`, and in the alert e-mail when a person must
act. Every message here is produced by the code that produces it in a run, with example values. Where a
message says "the secret", read "the environment variables" if you use the command line without
`--secret-id`. For a deployed stack, add `--secret-id <CredentialsSecretArn> --table <StateTableName>` to
the commands.

Under each message: its `reason` (the word in the logs' `failed` or `skipped` field, and in the alerts)
and whether only a person can fix it (then the bridge e-mails you, and `linkup-sync sync --once` exits
with 2).

**Nothing new arrives, although every check passes.** `linkup-sync doctor` shows the age of the newest
reading: "✘ Newest reading: 2 h old. The wearer's phone has not sent readings to LibreLink Up since
then: it is off, out of range of the sensor, or the LibreLink app was closed, or the sensor has ended.
Nothing to change in linkup-sync."

**Sensor Start not showing.** The readings arrive, but Nightscout shows no sensor age. The log has a
warning that starts "Nightscout refused the Sensor Start treatment (the token's role needs
api:treatments:create and api:treatments:read, or set NIGHTSCOUT_SENSOR_START=false)". Add the
treatment permissions to the token's role (see [Nightscout token](nightscout-token.md); with API v3,
`api:treatments:create` and `api:treatments:update`). `linkup-sync doctor` checks them. The bridge
warns once per sensor and does not ask again for the same sensor: after the fix, the next sensor gets
its treatment. For the current sensor, add a "Sensor Start" in Nightscout's Careportal yourself. Also
check that `NightscoutSensorStart` is `true`.
"""


def error_classes() -> list[type[LinkupSyncError]]:
    """Every error class linkup_sync.errors defines (the dynamic partial-upload classes left out)."""
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, LinkupSyncError) and cls.__module__ == errors.__name__ and "[" not in cls.__name__
    ]


def _quote(message: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in message.splitlines())


def render() -> str:
    parts = [INTRO]
    for section in (LLU, NS, SETUP, AWS):
        parts.append(f"## {section}\n")
        for cls, entry in ENTRIES.items():
            if entry.section != section:
                continue
            parts.append(f"### {entry.title}\n")
            for example in entry.examples:
                error = example()
                if not isinstance(error, cls):
                    raise TypeError(f"an example of {cls.__name__} built a {type(error).__name__}")
                parts.append(_quote(error.message) + "\n")
            person = "yes" if cls.needs_person else "no, it passes by itself"
            parts.append(f"`reason`: `{cls.reason}` · a person must act: {person} · `{cls.__name__}`\n")
            parts.append(entry.text + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the page is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = PAGE.exists() and PAGE.read_text(encoding="utf-8") == text
        if not same:
            print(f"out of date: {PAGE.relative_to(ROOT)} (run python -m tools.troubleshooting)", file=sys.stderr)
        return 0 if same else 1
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
