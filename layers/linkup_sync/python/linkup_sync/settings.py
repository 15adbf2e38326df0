"""The settings of a run (the personal stack's handler and the command line), validated once.

Read through config.EnvReader, so a ConfigError lists every problem at once and a person fixes
everything in one go. Setting names are those of nightscout-librelink-up, so its users can move over
unchanged. The credentials secret has its own module, secret_format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .config import EnvReader
from .http import check_url_scheme
from .librelinkup.regions import ALIASES, DEFAULT_URL_TEMPLATE, REGIONS
from .librelinkup.versions import DEFAULT_VERSION
from .secret_format import PATIENT_EXAMPLE, is_patient_id
from .trends import DEFAULT_TREND_MODE, TREND_MODES

DEFAULT_VERSION_SETTING = "auto"  # LINK_UP_VERSION when unset: follow LibreLink Up's minimum (issue #10)

# The values the template's parameters allow (LinkUpRegion AllowedValues, LinkUpVersion AllowedPattern).
# One definition for the function and the command line, so both accept exactly what a deploy accepts;
# tests/template compares them with template.yaml.
REGION_VALUES: tuple[str, ...] = tuple(sorted(r.upper() for r in REGIONS))
VERSION_KEYWORDS: tuple[str, ...] = ("auto",)
VERSION_PATTERN = r"^([0-9]+\.[0-9]+\.[0-9]+|" + "|".join(VERSION_KEYWORDS) + ")$"

DEFAULT_DEVICE_NAME = "linkup-sync"
# NIGHTSCOUT_DEVICE_NAME: the template's NightscoutDeviceName AllowedPattern (tests/template compares them).
DEVICE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:()/+-]{0,63}$"

_VERSION_RE = re.compile(VERSION_PATTERN)


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
    def from_env(cls, env: Mapping[str, str], *, need_aws: bool = True, need_secret: bool = True) -> Settings:
        """need_aws=False: the command line (no table, no secret; http to a home Nightscout allowed).
        need_secret=False: the hosted stack, whose credentials come from its registry, not a secret."""
        read = EnvReader(env)
        # Read in this order, so the problems are listed in it.
        region = read.checked(read.raw("LINK_UP_REGION", "EU"), check_region, "eu")
        connection = _connection(read)
        version, version_auto = _version(read)
        auto_accept_terms = read.flag("LINK_UP_AUTO_ACCEPT_TERMS")
        sensor_start = read.flag("NIGHTSCOUT_SENSOR_START", default=True)
        api_v3 = read.flag("NIGHTSCOUT_API_V3")
        allow_http = _allow_http(read, need_aws)
        announce = read.flag("NIGHTSCOUT_ANNOUNCE", default=True)
        alert_topic_arn = read.optional("ALERT_TOPIC_ARN")
        stale_after_minutes = read.whole_number("STALE_AFTER_MINUTES", 30, 10, 1440, unit="minutes")
        trend_arrows = read.choice(
            "TREND_ARROWS",
            TREND_MODES,
            DEFAULT_TREND_MODE,
            explain="derived (arrows from the readings, with double arrows for fast changes) or libre (the "
            "current reading keeps exactly LibreLink Up's arrow)",
        )
        device_name = read.matching(
            "NIGHTSCOUT_DEVICE_NAME",
            DEVICE_NAME_PATTERN,
            DEFAULT_DEVICE_NAME,
            explain="1 to 64 letters, digits, spaces or . _ : ( ) / + - starting with a letter or digit",
        )
        template = _api_url_template(read)
        table_name, secret_id = _stack_names(read, need_aws=need_aws, need_secret=need_secret)
        read.done()
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


# --- the steps of Settings.from_env that check more than one value's form -------------------------


def _connection(read: EnvReader) -> str | None:
    """LINK_UP_CONNECTION: empty (the only or first person followed), or a patientId, in lower case."""
    connection = read.optional("LINK_UP_CONNECTION")
    if connection is None:
        return None
    if is_patient_id(connection):
        return connection.lower()  # LibreLink Up's patientIds are lower-case UUIDs
    read.problem(
        f"LINK_UP_CONNECTION must be a patientId such as {PATIENT_EXAMPLE}, "
        f"not '{connection}'. Leave it empty to use the only (or first) person the account follows."
    )
    return connection


def _version(read: EnvReader) -> tuple[str, bool]:
    """LINK_UP_VERSION and whether it is 'auto' (then the built-in version, adopting the minimum a 920 names)."""
    version = read.text("LINK_UP_VERSION", DEFAULT_VERSION_SETTING)
    if version.lower() == "auto":
        return DEFAULT_VERSION, True
    explain = f"an app version of three numbers such as {DEFAULT_VERSION} (or 'auto')"
    return read.matching("LINK_UP_VERSION", _VERSION_RE, version, explain=explain), False


def _allow_http(read: EnvReader, need_aws: bool) -> bool:
    allow_http = read.flag("NIGHTSCOUT_ALLOW_HTTP")
    if allow_http and need_aws:
        # The function reaches Nightscout over the internet: plain http would expose the secret's hash.
        read.problem(
            "NIGHTSCOUT_ALLOW_HTTP is only for the command line on a home server (Nightscout on the local "
            "network). The function in AWS reaches Nightscout over the internet and always uses https://: "
            "remove NIGHTSCOUT_ALLOW_HTTP."
        )
        return False
    return allow_http


def _api_url_template(read: EnvReader) -> str:
    template = read.text("LINK_UP_API_URL", DEFAULT_URL_TEMPLATE).rstrip("/")
    problem = check_api_url_template(template)
    if problem:
        read.problem(problem)
    return template


def _stack_names(read: EnvReader, *, need_aws: bool, need_secret: bool) -> tuple[str | None, str | None]:
    """STATE_TABLE_NAME and CREDENTIALS_SECRET_ID: the template sets both; the command line needs neither."""
    if not need_aws:
        return read.optional("STATE_TABLE_NAME"), read.optional("CREDENTIALS_SECRET_ID")
    table_name = read.required("STATE_TABLE_NAME", "it must name the stack's DynamoDB table.")
    secret_id = read.optional("CREDENTIALS_SECRET_ID")
    if need_secret and secret_id is None:
        read.required("CREDENTIALS_SECRET_ID", "it must name the stack's secret.")
    return table_name or None, secret_id or None


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
