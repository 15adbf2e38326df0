"""Builds the adapters once per container and runs the sync service: shared by the Lambda handler and
the command line, so both take exactly the same code path."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, LinkupSyncError
from .fingerprint import slow_fingerprint
from .http import Deadline, make_pool
from .model import Credentials, Target
from .ports import (
    AlertPublisher,
    Announcer,
    Clock,
    CredentialSource,
    IncidentStore,
    NightscoutSink,
    RefreshableCredentials,
    StateStore,
)
from .report import RunReport
from .settings import Settings
from .state.model import TargetState, site_digest
from .sync import SyncService

if TYPE_CHECKING:
    import urllib3

    from .incidents.desk import Site
    from .incidents.known import KnownIncidents

# A run stops talking to LibreLink Up and Nightscout after this long, well inside the 30 s Lambda timeout;
# each request ends by it, body included.
RUN_DEADLINE_S = 20.0
# AWS calls may start until this long after the run began (storing what a late upload achieved); each
# takes at most aws.AWS_CALL_WORST_S, so a run ends by 21 + 7 = 28 s (tests hold this below the Timeout).
RUN_AWS_UNTIL_S = RUN_DEADLINE_S + 1.0
DEVICE = "linkup-sync"


@dataclass
class Dependencies:
    """Everything a run needs that is worth keeping between warm invocations."""

    settings: Settings
    store: StateStore
    credentials: CredentialSource
    clock: Clock = time.time
    pool: urllib3.PoolManager = field(default_factory=lambda: make_pool(maxsize=4))  # v3 posts 4 at a time
    monotonic: Callable[[], float] = time.monotonic
    deadline_s: float = RUN_DEADLINE_S
    aws_until_s: float = RUN_AWS_UNTIL_S  # real seconds from the run's start; see RUN_AWS_UNTIL_S
    # how a target's Nightscout uploader is made (the command line's dry run swaps it)
    sink_factory: Callable[[Dependencies, Target, TargetState, Deadline], NightscoutSink] = field(
        default=lambda deps, target, stored, deadline: build_sink(deps, target, stored, deadline)
    )
    # Incidents a person must act on (e-mail + Nightscout announcements); None: not told (local runs).
    incidents: IncidentStore | None = None
    alerts: AlertPublisher | None = None
    # What this container learned when it last read the incidents; None: not read yet (a cold start) or
    # unknown (the reading failed). Healthy runs skip reading them while none is open (incidents/known.py).
    known_incidents: KnownIncidents | None = None
    # How the person stores fixed credentials, for the incident texts; None: the personal stack's secret.
    secret_hint: str | None = None
    # What ties a stored ticket to the credentials it was issued for (fingerprint.py): the hosted worker
    # stores it sealed with KMS and uses the cheap one.
    fingerprint: Callable[[Credentials], str] = slow_fingerprint

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, clock: Clock = time.time) -> Dependencies:
        from .alerts import SnsAlerts
        from .secrets import SecretsManagerCredentials
        from .state.dynamodb import DynamoDBStateStore
        from .state.incidents import DynamoDBIncidentStore

        settings = Settings.from_env(env)
        assert settings.table_name and settings.secret_id  # from_env(need_aws=True) guarantees both
        store = DynamoDBStateStore(settings.table_name, clock=clock, secret_id=settings.secret_id)
        return cls(
            settings=settings,
            store=store,
            credentials=SecretsManagerCredentials(settings.secret_id, clock=clock),
            clock=clock,
            incidents=DynamoDBIncidentStore(settings.table_name, sharing=store, clock=clock),
            alerts=SnsAlerts(settings.alert_topic_arn, secret_id=settings.secret_id)
            if settings.alert_topic_arn
            else None,
        )


class StateJwtCache:
    """API v3's JWT, seeded from the target's stored state; the sync service stores it back."""

    def __init__(self, jwt: str | None, exp: int | None) -> None:
        self.value: tuple[str, int] | None = (jwt, exp) if jwt and exp else None

    def get(self) -> tuple[str, int] | None:
        return self.value

    def put(self, jwt: str, exp: int) -> None:
        self.value = (jwt, exp)


NIGHTSCOUT_SETTINGS_UNUSABLE = "The Nightscout settings in the secret cannot be used"


def uses_api_v3(target: Target, default: bool) -> bool:
    """Whether a target talks to Nightscout with API v3: its own NIGHTSCOUT_API_V3, else the setting's."""
    return default if target.api_v3 is None else target.api_v3


def nightscout_base_url(target: Target, settings: Settings, *, heading: str = NIGHTSCOUT_SETTINGS_UNUSABLE) -> str:
    """The target's NIGHTSCOUT_URL cleaned up, or a ConfigError (for the uploader and the dry run alike).

    NIGHTSCOUT_ALLOW_HTTP is for the command line only (the settings refuse it in AWS).
    """
    from .nightscout.url import normalize_nightscout_url

    try:
        return normalize_nightscout_url(target.nightscout_url, allow_http=settings.allow_http)
    except ValueError as exc:  # the messages name the setting, never its value
        raise ConfigError([str(exc)], heading=heading) from None


def build_sink(deps: Dependencies, target: Target, stored: TargetState, deadline: Deadline) -> NightscoutSink:
    """The Nightscout uploader for one target: API v1, or v3 when the target or the setting asks for it."""
    api_v3 = uses_api_v3(target, deps.settings.api_v3)
    url = nightscout_base_url(target, deps.settings)
    # What both uploaders take; v3 adds its app name and the JWT it exchanged the token for.
    common: dict[str, Any] = dict(
        base_url=url,
        token=target.nightscout_token,
        pool=deps.pool,
        deadline=deadline,
        device=deps.settings.device_name,  # NIGHTSCOUT_DEVICE_NAME, "linkup-sync" unless set
        allow_http=deps.settings.allow_http,
    )
    try:
        if api_v3:
            from .nightscout.v3 import NightscoutV3

            return NightscoutV3(
                **common, app=DEVICE, jwt_cache=StateJwtCache(stored.jwt, stored.jwt_exp), clock=deps.clock
            )
        from .nightscout.v1 import NightscoutV1

        return NightscoutV1(**common)
    except ValueError as exc:  # e.g. an empty token; the messages name the setting, never its value
        raise ConfigError([str(exc)], heading=NIGHTSCOUT_SETTINGS_UNUSABLE) from None


def run_once(deps: Dependencies) -> RunReport:
    """One run: within deps.deadline_s for LibreLink Up and Nightscout, AWS calls within deps.aws_until_s."""
    from .aws import calls_until

    with calls_until(time.monotonic() + deps.aws_until_s):
        return _run(deps)


def _run(deps: Dependencies) -> RunReport:
    from .librelinkup.client import LinkUpClient

    deadline = Deadline(deps.monotonic, deps.deadline_s)
    try:
        creds = deps.credentials.get()
    except ConfigError as exc:  # the secret is empty, incomplete or unreadable: a person must act
        _after_run(deps, None, RunReport(), exc, deadline)
        raise
    settings = deps.settings
    source = LinkUpClient(
        url_template=settings.api_url_template,
        version=settings.version,
        pool=deps.pool,
        deadline=deadline,
        auto_accept_terms=settings.auto_accept_terms,
    )
    service = SyncService(
        source=source,
        sinks=lambda target, stored: deps.sink_factory(deps, target, stored, deadline),
        store=deps.store,
        clock=deps.clock,
        region=settings.region,
        connection=settings.connection,
        version_auto=settings.version_auto,
        sensor_start=settings.sensor_start,
        trend_arrows=settings.trend_arrows,
        fingerprint=deps.fingerprint,
    )
    try:
        report = service.run(creds)
    except Exception as exc:
        if isinstance(exc, LinkupSyncError):  # the failure metrics and doctor read what the run got to
            exc.report = service.report
        service.report.linkup_requests = source.requests_made
        _after_run(deps, creds, service.report, exc, deadline, service)
        raise
    service.report.linkup_requests = source.requests_made
    _after_run(deps, creds, report, None, deadline, service)
    return report


def _after_run(
    deps: Dependencies,
    creds: Credentials | None,
    report: RunReport,
    exc: BaseException | None,
    deadline: Deadline,
    service: SyncService | None = None,
) -> None:
    """Re-read the secret next time if it may be what is wrong; tell the people about incidents."""
    from .incidents.desk import wants_fresh_secret

    if wants_fresh_secret(report, exc) and isinstance(deps.credentials, RefreshableCredentials):
        deps.credentials.refresh_next()
    if deps.incidents is None:
        return
    try:  # telling must never break a run that synced, nor hide why a run failed
        _tell(deps, creds, report, exc, deadline, service)
    except Exception as problem:
        import logging

        logging.getLogger("linkup_sync").warning(
            "Could not update the incidents (%s); the next run tries again", type(problem).__name__
        )


def _tell(
    deps: Dependencies,
    creds: Credentials | None,
    report: RunReport,
    exc: BaseException | None,
    deadline: Deadline,
    service: SyncService | None,
) -> None:
    from .incidents.desk import IncidentDesk, observe
    from .incidents.known import OpenTally, must_read

    assert deps.incidents is not None
    observation = observe(
        report,
        exc,
        multi=creds is not None and len(creds.targets) > 1,
        stale_after_minutes=deps.settings.stale_after_minutes,
        secret_hint=_secret_hint(deps, creds),
        account=service.account if service is not None else None,
        version=deps.settings.version,
    )
    loaded = service.state if service is not None else None  # None: the run failed before the state was read
    marker = loaded.incidents_open if loaded is not None else frozenset()
    if not must_read(deps.known_incidents, observation, marker):
        return  # nothing wrong now, none open when this container last looked, none marked by another
    tally = OpenTally(deps.incidents)
    desk = IncidentDesk(
        store=tally,
        clock=deps.clock,
        publisher=deps.alerts,
        announcers=_announcers(deps, creds, report, deadline) if deps.settings.announce else {},
        announce=deps.settings.announce,
    )
    deps.known_incidents = None  # unknown until the desk is through: a failure reads them again next run
    desk.process(observation)
    deps.known_incidents = tally.known()
    left = deps.known_incidents.open
    if loaded is not None and left != marker:  # the marker follows whoever read the incidents last
        deps.store.mark_incidents(loaded.key, opened=left - marker, closed=marker - left)


def _secret_hint(deps: Dependencies, creds: Credentials | None = None) -> str:
    from .secret_format import set_secret_hint

    if deps.secret_hint is not None:
        return deps.secret_hint
    # A TARGETS secret (several people) is not one for `make secret`, which writes one person only.
    several = creds is not None and any(t.entry is not None for t in creds.targets)
    return set_secret_hint(deps.settings.secret_id, targets=several)


def _announcers(
    deps: Dependencies, creds: Credentials | None, report: RunReport, deadline: Deadline
) -> dict[str, list[Site]]:
    """Per incident scope, the Nightscout sites to announce on: every site for "" (the whole stack)."""
    if creds is None:
        return {}
    by_scope: dict[str, list[Site]] = {"": []}
    made: dict[int, Site] = {}

    def sink_for(target: Target) -> Site | None:
        if id(target) not in made:
            try:
                sink = deps.sink_factory(deps, target, TargetState(target_id=""), deadline)
            except ConfigError:
                return None
            site = site_digest(target.nightscout_url)
            if not isinstance(sink, Announcer):
                return None  # a sink that cannot announce (the command line's dry run)
            made[id(target)] = (site, sink)
        return made[id(target)]

    seen_sites: set[str] = set()
    for target in creds.targets:
        entry = sink_for(target)
        if entry is not None and entry[0] not in seen_sites:
            seen_sites.add(entry[0])
            by_scope[""].append(entry)
    for t in report.targets:
        if t.target is not None and t.patient:
            entry = sink_for(t.target)
            if entry is not None:
                by_scope.setdefault(t.patient, []).append(entry)
    return by_scope
