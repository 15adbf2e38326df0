"""Settings from the environment and credentials from the secret, each validated once.

Both raise a ConfigError that lists every problem at once, so a person fixes everything in one go.
Setting names are those of nightscout-librelink-up, so its users can move over unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError, SecretError
from .http import check_url_scheme
from .librelinkup.regions import DEFAULT_URL_TEMPLATE, normalize_region
from .ports import Credentials, Target

DEFAULT_VERSION = "4.16.0"  # the built-in version: sent until LibreLink Up names a higher minimum
DEFAULT_VERSION_SETTING = "auto"  # LINK_UP_VERSION when unset: follow LibreLink Up's minimum (issue #10)

SECRET_KEYS = ("LINK_UP_USERNAME", "LINK_UP_PASSWORD", "NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+){0,2}$")
_PATIENT_RE = re.compile(r"^[0-9A-Fa-f-]{8,64}$")


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

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, need_aws: bool = True) -> Settings:
        problems: list[str] = []

        region = "eu"
        try:
            region = normalize_region(env.get("LINK_UP_REGION", "EU"))
        except ValueError as exc:
            problems.append(str(exc))

        connection = env.get("LINK_UP_CONNECTION", "").strip() or None
        if connection is not None and not _PATIENT_RE.match(connection):
            problems.append(
                f"LINK_UP_CONNECTION must be a patientId such as 8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13, "
                f"not '{connection}'. Leave it empty to use the only (or first) person the account follows."
            )

        version = env.get("LINK_UP_VERSION", "").strip() or DEFAULT_VERSION_SETTING
        version_auto = version.lower() == "auto"
        if version_auto:
            version = DEFAULT_VERSION
        elif not _VERSION_RE.match(version):
            problems.append(f"LINK_UP_VERSION must look like {DEFAULT_VERSION} (or be 'auto'), not '{version}'.")
        auto_accept_terms = _bool(env, "LINK_UP_AUTO_ACCEPT_TERMS", problems)
        sensor_start = _bool(env, "NIGHTSCOUT_SENSOR_START", problems, default=True)

        api_v3 = _bool(env, "NIGHTSCOUT_API_V3", problems)

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
            if secret_id is None:
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
        )


def set_secret_hint(secret_id: str | None) -> str:
    sid = secret_id or "<secret arn>"
    return (
        f"aws secretsmanager put-secret-value --secret-id {sid} --secret-string "
        '\'{"LINK_UP_USERNAME":"...","LINK_UP_PASSWORD":"...","NIGHTSCOUT_URL":"https://...",'
        '"NIGHTSCOUT_API_TOKEN":"..."}\''
    )


def _text(obj: Mapping[str, object], key: str, place: str, problems: list[str]) -> str:
    value = obj.get(key)
    if value is None:
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


def credentials_from_secret(raw: object, *, version: str, secret_id: str | None) -> Credentials:
    """Validate the secret's JSON. Messages name keys, never values.

    Two forms: the flat one of nightscout-librelink-up (one patient, NIGHTSCOUT_URL and
    NIGHTSCOUT_API_TOKEN at the top), or a TARGETS list, one entry per followed patient, each with its
    LINK_UP_CONNECTION (patientId), NIGHTSCOUT_URL, NIGHTSCOUT_API_TOKEN and optional NIGHTSCOUT_API_V3.
    """
    hint = "Set it with: " + set_secret_hint(secret_id)
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
    username = _text(raw, "LINK_UP_USERNAME", "the secret", problems)
    password = _text(raw, "LINK_UP_PASSWORD", "the secret", problems)
    targets: list[Target] = []
    listed = raw.get("TARGETS")
    if listed is None:
        url = _text(raw, "NIGHTSCOUT_URL", "the secret", problems)
        token = _text(raw, "NIGHTSCOUT_API_TOKEN", "the secret", problems)
        api_v3 = _optional_bool(raw, "NIGHTSCOUT_API_V3", "the secret", problems)
        connection = raw.get("LINK_UP_CONNECTION")
        patient = connection.strip() if isinstance(connection, str) and connection.strip() else None
        targets.append(Target(patient_id=patient, nightscout_url=url, nightscout_token=token, api_v3=api_v3))
    elif not isinstance(listed, list) or not listed:
        problems.append("TARGETS in the secret must be a non-empty list of objects.")
    else:
        seen: set[tuple[str, str]] = set()
        for i, entry in enumerate(listed, start=1):
            where = f"TARGETS entry {i}"
            if not isinstance(entry, dict):
                problems.append(f"TARGETS entry {i} must be an object.")
                continue
            patient = _text(entry, "LINK_UP_CONNECTION", where, problems)
            if patient and not _PATIENT_RE.match(patient):
                problems.append(
                    f"LINK_UP_CONNECTION in {where} must be a patientId such as 8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13."
                )
            url = _text(entry, "NIGHTSCOUT_URL", where, problems)
            token = _text(entry, "NIGHTSCOUT_API_TOKEN", where, problems)
            api_v3 = _optional_bool(entry, "NIGHTSCOUT_API_V3", where, problems)
            if (patient, url) in seen:
                problems.append(f"TARGETS entry {i} repeats the same patient and Nightscout site.")
            seen.add((patient, url))
            targets.append(Target(patient_id=patient, nightscout_url=url, nightscout_token=token, api_v3=api_v3))
    if problems:
        problems.append(hint)
        raise SecretError(problems, heading="The credentials secret is incomplete")
    return Credentials(username=username, password=password, targets=tuple(targets), version=version)
