"""Builds the adapters once per container and runs the sync service: shared by the Lambda handler and
the command line, so both take exactly the same code path."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .errors import ConfigError
from .http import Deadline, make_pool
from .ports import Clock, Credentials, NightscoutSink, Target
from .settings import Settings
from .state.model import StateStore, TargetState
from .sync import RunReport, SyncService

if TYPE_CHECKING:
    import urllib3

# A run stops talking to LibreLink Up and Nightscout after this long, well inside the 30 s Lambda timeout.
RUN_DEADLINE_S = 20.0
DEVICE = "linkup-sync"


class CredentialSource(Protocol):
    def get(self) -> Credentials: ...


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
    # how a target's Nightscout uploader is made (the command line's dry run swaps it)
    sink_factory: Callable[[Dependencies, Target, TargetState, Deadline], NightscoutSink] = field(
        default=lambda deps, target, stored, deadline: build_sink(deps, target, stored, deadline)
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, clock: Clock = time.time) -> Dependencies:
        from .secrets import SecretsManagerCredentials
        from .state.dynamodb import DynamoDBStateStore

        settings = Settings.from_env(os.environ if env is None else env)
        assert settings.table_name and settings.secret_id  # from_env(need_aws=True) guarantees both
        return cls(
            settings=settings,
            store=DynamoDBStateStore(settings.table_name, clock=clock),
            credentials=SecretsManagerCredentials(settings.secret_id),
            clock=clock,
        )


class StateJwtCache:
    """API v3's JWT, seeded from the target's stored state; the sync service stores it back."""

    def __init__(self, jwt: str | None, exp: int | None) -> None:
        self.value: tuple[str, int] | None = (jwt, exp) if jwt and exp else None

    def get(self) -> tuple[str, int] | None:
        return self.value

    def put(self, jwt: str, exp: int) -> None:
        self.value = (jwt, exp)


def build_sink(deps: Dependencies, target: Target, stored: TargetState, deadline: Deadline) -> NightscoutSink:
    """The Nightscout uploader for one target: API v1, or v3 when the target or the setting asks for it."""
    from .nightscout.url import normalize_nightscout_url

    api_v3 = deps.settings.api_v3 if target.api_v3 is None else target.api_v3
    try:
        allow_http = deps.settings.allow_http  # NIGHTSCOUT_ALLOW_HTTP: command line only (settings refuse it in AWS)
        url = normalize_nightscout_url(target.nightscout_url, allow_http=allow_http)
        if api_v3:
            from .nightscout.v3 import NightscoutV3

            return NightscoutV3(
                base_url=url,
                token=target.nightscout_token,
                pool=deps.pool,
                deadline=deadline,
                device=DEVICE,
                app=DEVICE,
                jwt_cache=StateJwtCache(stored.jwt, stored.jwt_exp),
                clock=deps.clock,
                allow_http=allow_http,
            )
        from .nightscout.v1 import NightscoutV1

        return NightscoutV1(
            base_url=url,
            token=target.nightscout_token,
            pool=deps.pool,
            deadline=deadline,
            device=DEVICE,
            allow_http=allow_http,
        )
    except ValueError as exc:  # the messages name the setting, never its value
        raise ConfigError([str(exc)], heading="The Nightscout settings in the secret cannot be used") from None


def run_once(deps: Dependencies) -> RunReport:
    from .librelinkup.client import LinkUpClient

    creds = deps.credentials.get()
    deadline = Deadline(deps.monotonic, deps.deadline_s)
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
    )
    try:
        return service.run(creds)
    except Exception as exc:
        exc.report = service.report  # type: ignore[attr-defined]  # for the failure metrics
        raise
    finally:
        service.report.linkup_requests = source.requests_made
