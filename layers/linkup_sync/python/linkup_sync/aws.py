"""boto3 clients: the one place that builds them, with the region found the way people expect it and
timeouts and retries that fit a run's time.

boto3 itself reads only AWS_DEFAULT_REGION (and the profile), while the AWS CLI docs, Lambda and most
guides say AWS_REGION. Both are accepted here, and a secret's ARN names its own region. Without any,
a clear ConfigError replaces botocore's "You must specify a region" (which would otherwise count as an
unexpected failure).

botocore's defaults (60 s connect and read timeouts, up to 10 attempts for DynamoDB) would let one slow
AWS call outlast the function. Here a call takes at most AWS_CALL_WORST_S, and inside a run
(`calls_until`) no call starts after the run's end for AWS calls: a slow DynamoDB, KMS, Secrets Manager
or SNS ends the run with StateUnavailable (or the caller's own error) before the function's Timeout.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Generic, TypeVar, cast

from .errors import ConfigError

_ARN_REGION = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):")

NO_REGION = (
    "No AWS region is set: set AWS_REGION (or AWS_DEFAULT_REGION) to the region of the stack, e.g. "
    "export AWS_REGION=eu-central-1, or give the secret's full ARN (it names the region)."
)

# In the region, an AWS endpoint connects in milliseconds and answers these small requests in tens of
# them: seconds are already a fault. Two attempts (one retry, botocore's "standard" mode with its
# jittered back-off of at most a second) absorb a dropped connection or a throttled request.
AWS_CONNECT_TIMEOUT_S = 1.0
AWS_READ_TIMEOUT_S = 2.0
AWS_MAX_ATTEMPTS = 2
AWS_BACKOFF_MAX_S = 1.0  # standard mode: random up to 2**(attempt-1) s; one retry waits at most 1 s
AWS_CALL_WORST_S = AWS_MAX_ATTEMPTS * (AWS_CONNECT_TIMEOUT_S + AWS_READ_TIMEOUT_S) + AWS_BACKOFF_MAX_S

# The monotonic time after which this run starts no AWS call (None: no run, e.g. the command line).
_CALLS_UNTIL: ContextVar[float | None] = ContextVar("linkup_sync_aws_calls_until", default=None)

C = TypeVar("C")


def region_name(secret_id: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """AWS_REGION, else AWS_DEFAULT_REGION, else the region in a secret ARN; None leaves it to boto3."""
    environ = os.environ if env is None else env
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = environ.get(name, "").strip()
        if value:
            return value
    match = _ARN_REGION.match(secret_id or "")
    return match.group(1) if match else None


def client_config() -> Any:
    """The botocore Config of every client: short timeouts, bounded retries."""
    from botocore.config import Config

    return Config(
        connect_timeout=AWS_CONNECT_TIMEOUT_S,
        read_timeout=AWS_READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": AWS_MAX_ATTEMPTS},
    )


def client(service: str, *, secret_id: str | None = None, region: str | None = None, patient: bool = False) -> Any:
    """boto3.client(service) in the region above (or the `region` named), with client_config(); a missing
    region is a ConfigError naming the fix.

    patient: botocore's own timeouts and retries, for the setup command's calls from a person's shell
    (perhaps far from the region, with a person watching), which are no run's."""
    import boto3
    from botocore.exceptions import NoRegionError

    try:
        made = boto3.client(  # type: ignore[call-overload]
            service,
            region_name=region or region_name(secret_id),
            **({} if patient else {"config": client_config()}),
        )
    except NoRegionError:
        raise ConfigError([NO_REGION], heading="AWS cannot be used") from None
    made.meta.events.register("before-call", _refuse_late_call)
    return made


class ClientSlot(Generic[C]):
    """An adapter's boto3 client, made by client() on first use: runs that never need it neither import
    boto3 nor build it. `given` (a test's, or one built for the command line) is used as it is.

    secret_id: the secret whose ARN names the region when AWS_REGION and AWS_DEFAULT_REGION are unset,
    so every adapter of a run finds the same region. Adapters that share one connection pool share
    one slot (the incident store takes the state store's).
    """

    def __init__(self, service: str, given: C | None = None, *, secret_id: str | None = None) -> None:
        self.service = service
        self.secret_id = secret_id
        self._made = given

    def get(self) -> C:
        if self._made is None:
            self._made = cast("C", client(self.service, secret_id=self.secret_id))
        return self._made


@contextlib.contextmanager
def calls_until(end: float | None) -> Iterator[None]:
    """Within this block (this thread's run), no AWS call starts after monotonic time `end`."""
    token = _CALLS_UNTIL.set(end)
    try:
        yield
    finally:
        _CALLS_UNTIL.reset(token)


def _refuse_late_call(**_: Any) -> None:
    end = _CALLS_UNTIL.get()
    if end is not None and time.monotonic() >= end:
        raise run_time_used_up()()


@functools.cache
def run_time_used_up() -> type[Exception]:
    """The error of an AWS call refused for lack of time: a botocore error, so every caller maps it as
    it maps an AWS timeout (StateUnavailable, ...). Made on first use: botocore is imported lazily."""
    from botocore.exceptions import BotoCoreError

    class RunTimeUsedUp(BotoCoreError):  # type: ignore[misc]
        fmt = "The run's time for AWS calls is used up"

    return RunTimeUsedUp
