"""The hosted stack's two handlers' own settings, read like the personal stack's (config.EnvReader).

hosted.yaml sets every variable here; a missing one means the stack was not deployed from it, so each
message says where the value comes from. One ConfigError lists every problem of a handler at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import EnvReader
from ..errors import ConfigError
from ..settings import Settings

# The settings that are the stack's (the worker's environment); an account may set only its own few.
STACK_SETTING_KEYS = (
    "LINK_UP_API_URL",
    "LINK_UP_AUTO_ACCEPT_TERMS",
    "NIGHTSCOUT_SENSOR_START",
    "NIGHTSCOUT_ANNOUNCE",
    "STALE_AFTER_MINUTES",
    "STATE_TABLE_NAME",
)
WORKER_HEADING = "The hosted worker is not configured"


@dataclass(frozen=True)
class DispatcherSettings:
    table_name: str  # STATE_TABLE_NAME: the registry's table
    queue_url: str  # SYNC_QUEUE_URL: where the due accounts go

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DispatcherSettings:
        read = EnvReader(env)
        why = "hosted.yaml sets it; redeploy the stack."
        settings = cls(
            table_name=read.required("STATE_TABLE_NAME", why), queue_url=read.required("SYNC_QUEUE_URL", why)
        )
        read.done()
        return settings


@dataclass(frozen=True)
class WorkerSettings:
    table_name: str  # STATE_TABLE_NAME: the registry's and the accounts' state table
    key_arn: str  # CREDENTIALS_KEY_ARN: the KMS key of the accounts' credentials

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerSettings:
        """Also checks the stack's settings once, with the rules of every account's run (Settings), so a
        wrong one is named here with the missing variables instead of failing each account's run."""
        read = EnvReader(env, heading=WORKER_HEADING)
        why = "it is an output of the hosted stack."
        table_name = read.required("STATE_TABLE_NAME", why)
        key_arn = read.required("CREDENTIALS_KEY_ARN", why)
        _check_stack_settings(read, {key: env[key] for key in STACK_SETTING_KEYS if key in env})
        read.done()
        return cls(table_name=table_name, key_arn=key_arn)


def _check_stack_settings(read: EnvReader, stack: Mapping[str, str]) -> None:
    """The problems of the stack's settings (those every account's run shares), read as a run reads them;
    not the table's absence, which is already named."""
    try:
        Settings.from_env({**stack, "STATE_TABLE_NAME": "checked above"}, need_aws=True, need_secret=False)
    except ConfigError as exc:
        for problem in exc.problems:
            read.problem(problem)
