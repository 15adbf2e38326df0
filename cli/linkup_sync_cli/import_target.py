"""Where `import-csv` sends the readings: the Nightscout of the same settings as `sync --once` (environment
variables, or the stack's secret with --secret-id, where --connection picks one person of a TARGETS list),
and the one paged read of what that Nightscout already holds over the export's span.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from linkup_sync.errors import ConfigError, NightscoutRejected
from linkup_sync.secret_format import is_patient_id
from linkup_sync.settings import Settings

if TYPE_CHECKING:
    from linkup_sync.model import Target
    from linkup_sync.readings import Reading

NIGHTSCOUT_KEYS = ("NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN")
# An honest Nightscout holds far fewer entries than one per 10 seconds; more pages than that mean its
# answers do not page as asked, and the read stops instead of asking forever.
_MIN_SPACING_S = 10
_PAGE = 1000  # entries per page: v1's READ_COUNT and v3's READ_LIMIT


class SpanReader(Protocol):
    def sgv_dates_page(self, from_ms: int, before_ms: int) -> tuple[list[int], bool]: ...


class ImportSink(SpanReader, Protocol):
    requests_made: int

    def upload(self, readings: Sequence[Reading]) -> int: ...


def _env_target(env: Mapping[str, str]) -> Target:
    from linkup_sync.model import Target

    missing = [key for key in NIGHTSCOUT_KEYS if not env.get(key, "").strip()]
    if missing:
        problems = [f"{key} is not set." for key in missing]
        problems.append(
            "Set NIGHTSCOUT_URL and NIGHTSCOUT_API_TOKEN as for `sync --once` (the LibreLink Up login is not "
            "needed to import a file), or read the stack's secret with --secret-id."
        )
        raise ConfigError(problems, heading="The Nightscout settings are incomplete")
    url, token = env["NIGHTSCOUT_URL"].strip(), env["NIGHTSCOUT_API_TOKEN"]
    return Target(patient_id=None, nightscout_url=url, nightscout_token=token)


def choose_target(targets: tuple[Target, ...], connection: str | None) -> Target:
    """The secret's one target, or the TARGETS entry whose LINK_UP_CONNECTION is --connection."""
    if connection is not None:
        wanted = connection.strip().lower()
        if not is_patient_id(wanted):
            raise ConfigError(
                [f"--connection must be a patientId (the LINK_UP_CONNECTION of a TARGETS entry), not '{connection}'."],
                heading="The import cannot start",
            )
        for target in targets:
            if target.patient_id == wanted:
                return target
        known = ", ".join(t.patient_id for t in targets if t.patient_id) or "none"
        raise ConfigError(
            [f"No TARGETS entry of the secret has LINK_UP_CONNECTION {wanted}. The entries have: {known}."],
            heading="The import cannot start",
        )
    if len(targets) == 1:
        return targets[0]
    known = ", ".join(t.patient_id or "(none)" for t in targets)
    raise ConfigError(
        [
            f"The secret lists {len(targets)} people (TARGETS): add --connection with the LINK_UP_CONNECTION of "
            f"the person whose export this is. The entries have: {known}."
        ],
        heading="The import cannot start",
    )


def import_sink(args: argparse.Namespace, env: Mapping[str, str], clock: Callable[[], float]) -> ImportSink:
    """The uploader for the chosen site (API v1 or v3). Raises ConfigError (or an AWS error for --secret-id)
    before anything is sent."""
    from linkup_sync.http import make_pool
    from linkup_sync.runtime import DEVICE, StateJwtCache, nightscout_base_url, uses_api_v3

    settings = Settings.from_env(env, need_aws=False)
    if args.secret_id:
        from linkup_sync.secrets import SecretsManagerCredentials

        target = choose_target(SecretsManagerCredentials(args.secret_id, clock=clock).get().targets, args.connection)
    else:
        if args.connection:
            raise ConfigError(
                ["--connection picks a person of the secret's TARGETS list: use it together with --secret-id."],
                heading="The import cannot start",
            )
        target = _env_target(env)
    api_v3 = uses_api_v3(target, settings.api_v3)
    url = nightscout_base_url(target, settings)
    # The same device (NIGHTSCOUT_DEVICE_NAME) and app names as the bridge: an imported reading has the identity
    # the bridge would give it.
    pool = make_pool(maxsize=4)
    try:
        if api_v3:
            from linkup_sync.nightscout.v3 import NightscoutV3

            sink: ImportSink = NightscoutV3(
                base_url=url,
                token=target.nightscout_token,
                pool=pool,
                device=settings.device_name,
                app=DEVICE,
                jwt_cache=StateJwtCache(None, None),
                clock=clock,
                allow_http=settings.allow_http,
            )
        else:
            from linkup_sync.nightscout.v1 import NightscoutV1

            sink = NightscoutV1(
                base_url=url,
                token=target.nightscout_token,
                pool=pool,
                device=settings.device_name,
                allow_http=settings.allow_http,
            )
    except ValueError as exc:  # the messages name the setting, never its value
        raise ConfigError([str(exc)], heading="The Nightscout settings cannot be used") from None
    return sink


def read_span(reader: SpanReader, from_ms: int, to_ms: int) -> list[int]:
    """Every device's sgv instants (sorted epoch seconds) with from_ms <= date <= to_ms, one page after the
    other, newest first. Raises a NightscoutError when Nightscout cannot tell (then nothing is imported)."""
    found: set[int] = set()
    before = to_ms + 1
    pages_allowed = (to_ms - from_ms) // 1000 // _MIN_SPACING_S // _PAGE + 3
    for _ in range(pages_allowed):
        dates, full = reader.sgv_dates_page(from_ms, before)
        inside = [d for d in dates if from_ms <= d < before]  # trust nothing: an answer may ignore the filter
        found.update(d // 1000 for d in inside)
        if not full:
            return sorted(found)
        if not inside or min(inside) >= before:
            break
        # Entries at exactly the oldest instant that did not fit add nothing: that instant is known.
        before = min(inside)
    raise NightscoutRejected(
        "Nightscout's answers to the paged read of the readings already there did not come to an end (each "
        "page was full but did not reach further back). Nothing was imported; check the site's API, or try "
        "again later.",
        what="the request for the readings already there",
    )
