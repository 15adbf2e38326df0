"""Settings from the environment and credentials from the secret, each validated once.

Both raise a ConfigError that lists every problem at once, so a person fixes everything in one go.
Setting names are those of nightscout-librelink-up, so its users can move over unchanged.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ConfigError, SecretError
from .http import check_url_scheme
from .librelinkup.regions import ALIASES, DEFAULT_URL_TEMPLATE, REGIONS
from .librelinkup.versions import DEFAULT_VERSION
from .ports import Credentials, Target
from .trends import DEFAULT_TREND_MODE, TREND_MODES

DEFAULT_VERSION_SETTING = "auto"  # LINK_UP_VERSION when unset: follow LibreLink Up's minimum (issue #10)

SECRET_KEYS = ("LINK_UP_USERNAME", "LINK_UP_PASSWORD", "NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN")
# Every key the secret may hold: the flat form (one person) and the TARGETS form (one entry per person).
TARGET_ENTRY_KEYS = ("LINK_UP_CONNECTION", "NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN", "NIGHTSCOUT_API_V3")
FLAT_SECRET_KEYS = (*SECRET_KEYS, "LINK_UP_CONNECTION", "NIGHTSCOUT_API_V3")
LIST_SECRET_KEYS = ("LINK_UP_USERNAME", "LINK_UP_PASSWORD", "TARGETS")

# The values the template's parameters allow (LinkUpRegion AllowedValues, LinkUpVersion AllowedPattern).
# One definition for the function and the command line, so both accept exactly what a deploy accepts;
# tests/template compares them with template.yaml.
REGION_VALUES: tuple[str, ...] = tuple(sorted(r.upper() for r in REGIONS))
VERSION_KEYWORDS: tuple[str, ...] = ("auto",)
VERSION_PATTERN = r"^([0-9]+\.[0-9]+\.[0-9]+|" + "|".join(VERSION_KEYWORDS) + ")$"

DEFAULT_DEVICE_NAME = "linkup-sync"
# NIGHTSCOUT_DEVICE_NAME: the template's NightscoutDeviceName AllowedPattern (tests/template compares them).
DEVICE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:()/+-]{0,63}$"

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_VERSION_RE = re.compile(VERSION_PATTERN)
_PATIENT_RE = re.compile(r"^[0-9A-Fa-f-]{8,64}$")
_PATIENT_EXAMPLE = "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13"
# A follower login is an e-mail address: something@domain, no spaces. Checked before any login, because a
# login with a value that cannot be an address only costs a try and trips the bad-password breaker.
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def _bool(env: Mapping[str, str], name: str, problems: list[str], default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    problems.append(f"{name} must be true or false, not '{raw}'.")
    return default


def check_api_url_template(template: str) -> str | None:
    """Return a problem description, or None when the LibreLink Up URL template is acceptable."""
    if "{region}" not in template:
        return (
            f"LINK_UP_API_URL must contain '{{region}}' where the region goes, e.g. {DEFAULT_URL_TEMPLATE} "
            f"(it is '{template}')."
        )
    try:
        check_url_scheme(template.replace("{region}", "eu"), name="LINK_UP_API_URL")
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Settings:
    region: str
    connection: str | None
    version: str
    api_v3: bool
    api_url_template: str
    table_name: str | None
    secret_id: str | None
    version_auto: bool = False  # LINK_UP_VERSION=auto: adopt the minimum version a 920 reply names
    auto_accept_terms: bool = False  # LINK_UP_AUTO_ACCEPT_TERMS: accept new terms / privacy policy
    sensor_start: bool = True  # NIGHTSCOUT_SENSOR_START: post a "Sensor Start" treatment per new sensor
    allow_http: bool = False  # NIGHTSCOUT_ALLOW_HTTP (command line only): http to a private-network Nightscout
    announce: bool = True  # NIGHTSCOUT_ANNOUNCE: post incidents as Nightscout Announcement treatments
    alert_topic_arn: str | None = None  # ALERT_TOPIC_ARN: the SNS topic the bridge's own e-mails go to
    stale_after_minutes: int = 30  # STALE_AFTER_MINUTES: announce "no new reading" after this long
    trend_arrows: str = DEFAULT_TREND_MODE  # TREND_ARROWS: "derived" (double arrows, every entry) or "libre"
    device_name: str = DEFAULT_DEVICE_NAME  # NIGHTSCOUT_DEVICE_NAME: the entries' "device" (nightscout-librelink-up)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, need_aws: bool = True, need_secret: bool = True) -> Settings:  # noqa: C901
        """need_secret=False: the hosted stack, whose credentials come from its registry, not a secret."""
        problems: list[str] = []

        region = "eu"
        try:
            region = check_region(env.get("LINK_UP_REGION", "EU"))
        except ValueError as exc:
            problems.append(str(exc))

        connection = env.get("LINK_UP_CONNECTION", "").strip() or None
        if connection is not None and not is_patient_id(connection):
            problems.append(
                f"LINK_UP_CONNECTION must be a patientId such as {_PATIENT_EXAMPLE}, "
                f"not '{connection}'. Leave it empty to use the only (or first) person the account follows."
            )
        elif connection is not None:
            connection = connection.lower()  # LibreLink Up's patientIds are lower-case UUIDs

        version = env.get("LINK_UP_VERSION", "").strip() or DEFAULT_VERSION_SETTING
        version_auto = version.lower() == "auto"
        if version_auto:
            version = DEFAULT_VERSION
        elif not _VERSION_RE.match(version):
            problems.append(
                f"LINK_UP_VERSION must be an app version of three numbers such as {DEFAULT_VERSION} (or 'auto'), "
                f"not '{version}'."
            )
        auto_accept_terms = _bool(env, "LINK_UP_AUTO_ACCEPT_TERMS", problems)
        sensor_start = _bool(env, "NIGHTSCOUT_SENSOR_START", problems, default=True)

        api_v3 = _bool(env, "NIGHTSCOUT_API_V3", problems)
        allow_http = _bool(env, "NIGHTSCOUT_ALLOW_HTTP", problems)
        if allow_http and need_aws:
            # The function reaches Nightscout over the internet: plain http would expose the secret's hash.
            problems.append(
                "NIGHTSCOUT_ALLOW_HTTP is only for the command line on a home server (Nightscout on the local "
                "network). The function in AWS reaches Nightscout over the internet and always uses https://: "
                "remove NIGHTSCOUT_ALLOW_HTTP."
            )
            allow_http = False
        announce = _bool(env, "NIGHTSCOUT_ANNOUNCE", problems, default=True)
        alert_topic_arn = env.get("ALERT_TOPIC_ARN", "").strip() or None
        stale_raw = env.get("STALE_AFTER_MINUTES", "").strip() or "30"
        stale_after_minutes = 30
        if stale_raw.isdigit() and 10 <= int(stale_raw) <= 1440:
            stale_after_minutes = int(stale_raw)
        else:
            problems.append(
                f"STALE_AFTER_MINUTES must be a whole number of minutes from 10 to 1440, not '{stale_raw}'."
            )

        trend_arrows = env.get("TREND_ARROWS", "").strip().lower() or DEFAULT_TREND_MODE
        if trend_arrows not in TREND_MODES:
            problems.append(
                f"TREND_ARROWS must be derived (arrows from the readings, with double arrows for fast changes) "
                f"or libre (the current reading keeps exactly LibreLink Up's arrow), not '{env['TREND_ARROWS']}'."
            )
            trend_arrows = DEFAULT_TREND_MODE
        device_name = env.get("NIGHTSCOUT_DEVICE_NAME", "").strip() or DEFAULT_DEVICE_NAME
        if not re.match(DEVICE_NAME_PATTERN, device_name):
            problems.append(
                "NIGHTSCOUT_DEVICE_NAME must be 1 to 64 letters, digits, spaces or . _ : ( ) / + - starting with "
                f"a letter or digit, not '{device_name}'."
            )

        template = env.get("LINK_UP_API_URL", "").strip() or DEFAULT_URL_TEMPLATE
        template = template.rstrip("/")
        problem = check_api_url_template(template)
        if problem:
            problems.append(problem)

        table_name = env.get("STATE_TABLE_NAME", "").strip() or None
        secret_id = env.get("CREDENTIALS_SECRET_ID", "").strip() or None
        if need_aws:
            if table_name is None:
                problems.append("STATE_TABLE_NAME is not set: it must name the stack's DynamoDB table.")
            if secret_id is None and need_secret:
                problems.append("CREDENTIALS_SECRET_ID is not set: it must name the stack's secret.")

        if problems:
            raise ConfigError(problems)
        return cls(
            region=region,
            connection=connection,
            version=version,
            api_v3=api_v3,
            api_url_template=template,
            table_name=table_name,
            secret_id=secret_id,
            version_auto=version_auto,
            auto_accept_terms=auto_accept_terms,
            sensor_start=sensor_start,
            allow_http=allow_http,
            announce=announce,
            alert_topic_arn=alert_topic_arn,
            stale_after_minutes=stale_after_minutes,
            trend_arrows=trend_arrows,
            device_name=device_name,
        )


def check_region(value: str) -> str:
    """The lower-case key of a LINK_UP_REGION value the template's LinkUpRegion parameter allows.

    Raises ValueError. Upper or lower case are both fine; the aliases GB and UK are refused, since the
    template refuses them too (a setting that works locally must also deploy).
    """
    text = str(value).strip()
    if text.upper() in REGION_VALUES:
        return text.lower()
    listed = ", ".join(REGION_VALUES)
    alias = ALIASES.get(text.lower())
    if alias:
        raise ValueError(f"LINK_UP_REGION '{text}' is not a region name: use {alias.upper()} (the UK and Ireland).")
    raise ValueError(f"LINK_UP_REGION '{text}' is not a LibreLink Up region; use one of {listed} (EU2 for the UK).")


def _suggestion(key: object, known: list[str]) -> str | None:
    """The known key an unknown one most likely means (a case variant or a typing error), or None."""
    upper = str(key).strip().upper()
    if upper in known:
        return upper
    close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key_problems(obj: Mapping[str, object], allowed: Iterable[str], place: str) -> list[str]:
    """One problem per key of `obj` that is not in `allowed`, with a "did you mean" where one is close.

    A typing error must not be ignored: a secret with LINK_UP_CONNECTON would follow the first person the
    account follows, so with two children one child's readings could land in the other's Nightscout.
    Key names only, never values. Reusable for every place that takes these keys (secret, TARGETS
    entries, the hosted accounts).
    """
    known = list(allowed)
    problems: list[str] = []
    for key in obj:
        if key in known:
            continue
        text = str(key)
        meant = _suggestion(key, known)
        if meant is not None and meant == text.strip().upper():
            problems.append(f"'{text}' in {place} must be written exactly {meant} (in capitals).")
        elif meant is not None:
            problems.append(f"'{text}' in {place} is not a key linkup-sync knows. Did you mean {meant}?")
        else:
            problems.append(f"'{text}' in {place} is not a key linkup-sync knows. Allowed: {', '.join(known)}.")
    return problems


def meant_keys(obj: Mapping[str, object], allowed: Iterable[str]) -> set[str]:
    """The known keys that obj's unknown keys most likely stand for (to not also call them missing)."""
    known = list(allowed)
    return {m for key in obj if key not in known and (m := _suggestion(key, known)) is not None}


def set_secret_hint(secret_id: str | None, *, targets: bool = False) -> str:
    """How to store the secret. Never a command with the values in it: a password on a command line ends
    up in the shell history and in `ps`.

    targets: the secret has the TARGETS form (several people). `make secret` writes only the flat form
    and would drop the other people, so it is not suggested then.
    """
    sid = secret_id or "<CredentialsSecretArn>"
    by_file = (
        "write the JSON to a file secret.json and run: aws secretsmanager put-secret-value "
        f"--secret-id {sid} --secret-string file://secret.json (then delete the file)"
    )
    if targets:
        return (
            "`make setup` in the linkup-sync checkout (it asks for each person and keeps them all; it shows no "
            f"password or token), or {by_file}"
        )
    return (
        "`make secret` in the linkup-sync checkout (it reads the values from environment variables and shows "
        f"none of them), or {by_file}"
    )


def _text(obj: Mapping[str, object], key: str, place: str, problems: list[str], reported: Iterable[str] = ()) -> str:
    value = obj.get(key)
    if value is None:
        if key not in reported:  # a misspelt or lower-case variant was already reported as such
            problems.append(f"{key} is missing from {place}.")
    elif not isinstance(value, str) or not value.strip():
        problems.append(f"{key} in {place} is empty or not a string.")
    else:
        return value if key == "LINK_UP_PASSWORD" else value.strip()
    return ""


def _optional_bool(obj: Mapping[str, object], key: str, place: str, problems: list[str]) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | (_FALSE - {""}):
        return value.strip().lower() in _TRUE
    problems.append(f"{key} in {place} must be true or false.")
    return None


def is_patient_id(text: str) -> bool:
    """The one check of a LINK_UP_CONNECTION: a LibreLink Up patientId (a UUID), in either case."""
    return _PATIENT_RE.match(text) is not None


def _check_patient(patient: str | None, where: str, problems: list[str]) -> None:
    """LINK_UP_CONNECTION in the secret or in a TARGETS entry: empty, or a patientId."""
    if patient and not is_patient_id(patient):
        problems.append(f"LINK_UP_CONNECTION in {where} must be a patientId such as {_PATIENT_EXAMPLE}.")


def credentials_from_secret(  # noqa: C901
    raw: object, *, version: str, secret_id: str | None, hint: str | None = None, place: str = "the secret"
) -> Credentials:
    """Validate the secret's JSON. Messages name keys, never values.

    Two forms: the flat one of nightscout-librelink-up (one patient, NIGHTSCOUT_URL and
    NIGHTSCOUT_API_TOKEN at the top), or a TARGETS list, one entry per followed patient, each with its
    LINK_UP_CONNECTION (patientId), NIGHTSCOUT_URL, NIGHTSCOUT_API_TOKEN and optional NIGHTSCOUT_API_V3.
    """
    given_hint = hint
    hint = hint or "Set it with: " + set_secret_hint(secret_id)
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SecretError(
                [
                    "The secret is not JSON. It must be a JSON object with the keys " + ", ".join(SECRET_KEYS) + ".",
                    hint,
                ],
                heading="The credentials secret cannot be used",
            ) from None
    if not isinstance(raw, dict):
        raise SecretError(
            ["The secret must be a JSON object with the keys " + ", ".join(SECRET_KEYS) + ".", hint],
            heading="The credentials secret cannot be used",
        )
    problems: list[str] = []
    listed = raw.get("TARGETS")
    # A misspelt TARGETS (TARGET, targets) means the list form: say so instead of "NIGHTSCOUT_URL is missing".
    list_form = listed is not None or "TARGETS" in meant_keys(raw, (*FLAT_SECRET_KEYS, "TARGETS"))
    allowed = LIST_SECRET_KEYS if list_form else FLAT_SECRET_KEYS
    if list_form and given_hint is None:
        hint = "Set it with: " + set_secret_hint(secret_id, targets=True)
    problems += unknown_key_problems(raw, allowed if listed is not None else (*allowed, "TARGETS"), place)
    if listed is not None:
        moved = [key for key in TARGET_ENTRY_KEYS if key in raw]
        if moved:
            problems.append(
                "With TARGETS, " + ", ".join(moved) + " belong(s) in each TARGETS entry, not at the top of "
                f"{place}: move them into the entries."
            )
    cased = meant_keys(raw, allowed)  # reported above with "did you mean": not also "missing"
    username = _text(raw, "LINK_UP_USERNAME", place, problems, cased)
    if username and not _EMAIL_RE.match(username):
        problems.append(
            f"LINK_UP_USERNAME in {place} is not an e-mail address (it has a space, or no @ or domain): it "
            "must be the e-mail address the LibreLink Up app logs in with. No login was tried."
        )
        username = ""
    password = _text(raw, "LINK_UP_PASSWORD", place, problems, cased)
    targets: list[Target] = []
    if listed is None and list_form:
        pass  # the misspelt TARGETS key is reported above; its entries cannot be read
    elif listed is None:
        url = _text(raw, "NIGHTSCOUT_URL", place, problems, cased)
        token = _text(raw, "NIGHTSCOUT_API_TOKEN", place, problems, cased)
        api_v3 = _optional_bool(raw, "NIGHTSCOUT_API_V3", place, problems)
        connection = raw.get("LINK_UP_CONNECTION")
        patient = connection.strip().lower() if isinstance(connection, str) and connection.strip() else None
        _check_patient(patient, place, problems)
        targets.append(Target(patient_id=patient, nightscout_url=url, nightscout_token=token, api_v3=api_v3))
    elif not isinstance(listed, list) or not listed:
        problems.append(f"TARGETS in {place} must be a non-empty list of objects.")
    else:
        seen: set[tuple[str, str]] = set()
        for i, entry in enumerate(listed, start=1):
            where = f"TARGETS entry {i}"
            if not isinstance(entry, dict):
                problems.append(f"TARGETS entry {i} must be an object.")
                continue
            problems += unknown_key_problems(entry, TARGET_ENTRY_KEYS, where)
            entry_cased = meant_keys(entry, TARGET_ENTRY_KEYS)
            patient = _text(entry, "LINK_UP_CONNECTION", where, problems, entry_cased).lower()
            _check_patient(patient, where, problems)
            url = _text(entry, "NIGHTSCOUT_URL", where, problems, entry_cased)
            token = _text(entry, "NIGHTSCOUT_API_TOKEN", where, problems, entry_cased)
            api_v3 = _optional_bool(entry, "NIGHTSCOUT_API_V3", where, problems)
            if (patient, url) in seen:
                problems.append(f"TARGETS entry {i} repeats the same patient and Nightscout site.")
            seen.add((patient, url))
            targets.append(
                Target(patient_id=patient, nightscout_url=url, nightscout_token=token, api_v3=api_v3, entry=i)
            )
    if problems:
        # "incomplete" only when something is missing; an unknown key or a wrong value is not that.
        only_missing = all(
            p.endswith(f" is missing from {place}.") or " is missing from TARGETS entry" in p for p in problems
        )
        problems.append(hint)
        heading = f"The credentials in {place} are " + ("incomplete" if only_missing else "not usable as they are")
        raise SecretError(problems, heading=heading)
    return Credentials(username=username, password=password, targets=tuple(targets), version=version)
