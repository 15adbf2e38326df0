"""Builds the adapters once per container and runs the sync service: shared by the Lambda handler and
the command line, so both take exactly the same code path."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConfigError
from .http import Deadline, make_pool
from .ports import Clock, Credentials
from .settings import Settings
from .state.model import StateStore
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
    pool: urllib3.PoolManager = field(default_factory=make_pool)
    monotonic: Callable[[], float] = time.monotonic
    deadline_s: float = RUN_DEADLINE_S

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


def build_sink(deps: Dependencies, creds: Credentials, deadline: Deadline) -> Any:
    from .nightscout.url import normalize_nightscout_url
    from .nightscout.v1 import NightscoutV1

    try:
        url = normalize_nightscout_url(creds.nightscout_url)
        return NightscoutV1(
            base_url=url, token=creds.nightscout_token, pool=deps.pool, deadline=deadline, device=DEVICE
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
    sink = build_sink(deps, creds, deadline)
    service = SyncService(
        source=source,
        sink=sink,
        store=deps.store,
        clock=deps.clock,
        region=settings.region,
        connection=settings.connection,
        version_auto=settings.version_auto,
    )
    try:
        return service.run(creds)
    except Exception as exc:
        exc.report = service.report  # type: ignore[attr-defined]  # for the failure metrics
        raise
    finally:
        service.report.linkup_requests = source.requests_made
        service.report.nightscout_requests = sink.requests_made
