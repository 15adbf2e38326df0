"""The hosted worker: one message of the queue = one account's run, through the same run_once.

Each message names an account and the minute it was due. The run is claimed first (one conditional
write on the registry item, which also returns it), so a message delivered twice, or one that arrives
after the next one, does nothing. The accounts of a batch run side by side in threads: a slow
Nightscout or LibreLink Up answer of one never delays another, and one's failure is only its own.

Time: each account's run has its own deadline (runtime.RUN_DEADLINE_S from its start, less when the
invocation has less left), and every request of it ends by that deadline, body included; so its thread
ends by itself. The batch returns by INVOCATION_BUDGET_S (or the invocation's time left, less a
margin), whatever an account is still doing: one slow or hostile site never costs the others their run.

A failed run (LibreLink Up or Nightscout answered with an error, wrong credentials) is handled like
in the personal stack: the breakers are stored, the person is told on their Nightscout, and the next
interval is the retry. The message is not retried by SQS: that would ask Abbott again within minutes.
Only a failure of our own (an unexpected error before the run could start) is returned as a batch
item failure, after releasing the claim, so SQS delivers the message again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..addresses import Resolve, SiteAddresses, loopback_allowed
from ..aws import AWS_CALL_WORST_S
from ..errors import ConfigError, LinkupSyncError
from ..fingerprint import sealed_fingerprint
from ..http import make_pool
from ..incidents.known import KnownIncidents
from ..log_context import account_logs, install
from ..model import Credentials
from ..ports import Clock
from ..public_pool import guard_pool
from ..runtime import RUN_AWS_UNTIL_S, RUN_DEADLINE_S, Dependencies, run_once
from ..settings import Settings
from ..state.dynamodb import DynamoDBStateStore
from ..state.incidents import DynamoDBIncidentStore
from .accounts import HOSTED_HINT, account_credentials
from .registry import ACCOUNT_SETTING_KEYS, Account, Registry, incidents_partition
from .sealed_state import VaultSealer
from .settings import STACK_SETTING_KEYS, WorkerSettings
from .sites import ADDRESS_HEADING, linkup_endpoints, refused_sites
from .vault import Vault

if TYPE_CHECKING:
    import urllib3

    from ..report import RunReport

log = logging.getLogger("linkup_sync")

INCIDENT_MEMORY = 20_000  # accounts whose incidents (mostly none open) this container remembers
# The batch returns by this many seconds after it began (hosted.yaml gives the function 60 s), and at the
# latest RETURN_MARGIN_S before the invocation's own end.
INVOCATION_BUDGET_S = 50.0
RETURN_MARGIN_S = 5.0
# After its deadline a run may still store what it did: AWS calls start until RUN_AWS_UNTIL_S and each
# takes at most AWS_CALL_WORST_S.
AFTER_DEADLINE_S = RUN_AWS_UNTIL_S - RUN_DEADLINE_S + AWS_CALL_WORST_S


@dataclass
class Outcome:
    """What became of one message."""

    account: str
    status: str  # ran, skipped, failed, duplicate, late, malformed, error
    report: RunReport | None = None
    reason: str | None = None

    @property
    def counted(self) -> bool:
        """A run that happened (the share-failing alarm counts these)."""
        return self.status in ("ran", "skipped", "failed")

    @property
    def failing(self) -> bool:
        """No upload because of an error or a breaker: what the operator's alarm watches."""
        return self.status in ("skipped", "failed")


@dataclass
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)  # SQS message ids to deliver again

    def response(self) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in self.retry]}


class HostedCredentials:
    """One account's credentials: its registry item's ciphertext, opened by the shared vault.

    Their Nightscout addresses are checked against the hosted rule again: an item may predate the rule.
    """

    def __init__(self, vault: Vault, account: Account, addresses: SiteAddresses | None = None) -> None:
        self.vault = vault
        self.account = account
        self.addresses = addresses if addresses is not None else SiteAddresses()

    def get(self) -> Credentials:
        creds = account_credentials(self.account, self.vault.open(self.account.id, self.account.ciphertext))
        problems = refused_sites(creds, self.addresses)
        if problems:
            raise ConfigError(problems, heading=ADDRESS_HEADING)
        return creds

    def refresh_next(self) -> None:
        self.vault.forget(self.account.id)


class Worker:
    def __init__(
        self,
        *,
        registry: Registry,
        vault: Vault,
        store: DynamoDBStateStore,
        stack_env: Mapping[str, str],
        clock: Clock = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        pool: urllib3.PoolManager | None = None,
        max_parallel: int = 10,
        resolve: Resolve | None = None,
    ) -> None:
        """`stack_env` is the function's environment (LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT is read from it);
        `pool` (default: a new one) is made to connect only where the hosted rule allows, its names looked
        up by `resolve` (default: the system's resolver)."""
        self.registry = registry
        self.vault = vault
        if store.sealer is None:  # tickets, fingerprints and JWTs are stored only as KMS ciphertexts
            store.sealer = VaultSealer(vault)
        self.store = store
        self.stack_env = {key: stack_env[key] for key in STACK_SETTING_KEYS if key in stack_env}
        self.clock = clock
        self.monotonic = monotonic
        self.max_parallel = max_parallel
        self.addresses = SiteAddresses(
            allow_loopback=loopback_allowed(stack_env),
            resolve=resolve,
            exempt=linkup_endpoints(self.stack_env.get("LINK_UP_API_URL", "")),
        )
        self.pool = guard_pool(pool if pool is not None else make_pool(maxsize=4 * max_parallel), self.addresses)
        self._settings: dict[tuple[tuple[str, str], ...], Settings] = {}
        self._incidents: OrderedDict[str, KnownIncidents | None] = OrderedDict()
        self._lock = threading.Lock()
        install()  # the account of each run on its log lines, before the threads run

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, clock: Clock = time.time) -> Worker:
        settings = WorkerSettings.from_env(env)
        store = DynamoDBStateStore(settings.table_name, clock=clock)
        return cls(
            registry=Registry(settings.table_name, client=store.client, clock=clock),
            vault=Vault(settings.key_arn),
            store=store,
            stack_env=env,  # the loopback switch of the tests too (addresses.loopback_allowed)
            clock=clock,
        )

    def handle(self, records: Sequence[Mapping[str, Any]], *, time_left_s: float | None = None) -> BatchResult:
        """All the messages of one SQS batch, side by side; returns in time (`time_left_s`: what the
        invocation has left, from the Lambda context), whatever an account's run is still doing."""
        result = BatchResult()
        if not records:
            return result
        budget = INVOCATION_BUDGET_S
        if time_left_s is not None:
            budget = min(budget, time_left_s - RETURN_MARGIN_S)
        ends = time.monotonic() + budget
        threads = ThreadPoolExecutor(max_workers=min(self.max_parallel, len(records)))
        futures: list[Future[Outcome]] = [threads.submit(self._one, record, ends) for record in records]
        wait(futures, timeout=max(0.0, ends - time.monotonic()))
        # Never waits for a run past the budget: its requests end by its deadline, so its thread ends too.
        threads.shutdown(wait=False, cancel_futures=True)
        for record, future in zip(records, futures, strict=True):
            outcome = future.result() if future.done() and not future.cancelled() else _unfinished(record, future)
            result.outcomes.append(outcome)
            if outcome.status == "error":
                result.retry.append(str(record.get("messageId", "")))
        return result

    def _one(self, record: Mapping[str, Any], ends: float | None = None) -> Outcome:
        parsed = _message(record)
        if parsed is None:
            log.error("A queue message is not a linkup-sync dispatch (dropped): %s", str(record.get("messageId")))
            return Outcome(account="", status="malformed")
        account_id, due, interval = parsed
        try:
            return self.run_account(account_id, due, interval, ends=ends)
        except Exception as exc:  # not the account's fault: SQS delivers it again
            log.exception(
                "Account %s: unexpected failure (%s); the message is retried",
                account_id,
                type(exc).__name__,
                extra={"account": account_id},
            )
            return Outcome(account=account_id, status="error", reason=type(exc).__name__)

    def run_account(self, account_id: str, due: int, interval: int = 0, *, ends: float | None = None) -> Outcome:
        """One account's run; every log line it writes carries the account's id. `ends`: the monotonic time
        by which the batch returns; the run's deadline leaves room before it for what a run stores after."""
        with account_logs(account_id):
            return self._run_account(account_id, due, interval, ends)

    def _run_account(self, account_id: str, due: int, interval: int, ends: float | None) -> Outcome:
        if _run_deadline_s(ends) <= 1.0:  # no time for a run in this invocation: nothing claimed, SQS delivers again
            return Outcome(account=account_id, status="error", reason="no_time")
        now_minute = int(self.clock() // 60)
        # One minute of grace: the dispatcher's delays (up to 59 s after it started) carry the last
        # messages of a minute into the next one, every minute, and a 1-minute account must still run.
        if interval and now_minute - due > interval:
            return Outcome(account=account_id, status="late")  # the next dispatch of it is already out
        try:
            account = self.registry.claim(account_id, due)
        except LinkupSyncError as exc:  # DynamoDB: nothing was claimed, deliver again
            return Outcome(account=account_id, status="error", reason=exc.reason)
        if account is None:  # run for this minute already (a second delivery), or removed meanwhile
            return Outcome(account=account_id, status="duplicate")
        try:
            deps = self.dependencies(account)
            deadline_s = _run_deadline_s(ends)  # the claim took some of the time: the deadline starts now
            if deadline_s <= 1.0:
                # No time left after the claim: a run started now would fail on its own budget, which the
                # run takes for LibreLink Up timing out (a back-off). Release the claim: SQS delivers again.
                self.registry.release(account, due, account.last_due)
                return Outcome(account=account_id, status="error", reason="no_time")
            deps.deadline_s = deadline_s
            deps.aws_until_s = deps.deadline_s + (RUN_AWS_UNTIL_S - RUN_DEADLINE_S)
        except ConfigError as exc:
            log.error("Account %s: %s", account_id, exc.message)
            return Outcome(account=account_id, status="failed", reason=exc.reason)
        except Exception:
            self.registry.release(account, due, account.last_due)
            raise
        try:
            report = run_once(deps)
        except LinkupSyncError as exc:
            log.warning(  # the message names cause and fix and never a secret (errors.py)
                "Account %s: run failed (%s): %s",
                account_id,
                exc.reason,
                exc.message,
                extra={"account": account_id, "reason": exc.reason},
            )
            return Outcome(account=account_id, status="failed", report=exc.report, reason=exc.reason)
        except Exception as exc:
            # A bug of ours inside the run: it may have uploaded already, so it is not delivered again
            # (the next interval is the retry), but it counts as a failed run for the operator's alarm.
            log.exception(
                "Account %s: unexpected failure in the run (%s); please report it", account_id, type(exc).__name__
            )
            return Outcome(account=account_id, status="failed", reason="internal")
        finally:
            self._remember_incidents(account_id, deps.known_incidents)
        status = "skipped" if report.skipped else "ran"
        log.info("account run finished", extra={"account": account_id, "summary": report.as_dict()})
        return Outcome(account=account_id, status=status, report=report, reason=report.skipped)

    def settings_for(self, account: Account) -> Settings:
        # Only the account's own few keys: a registry item must not choose the table or the API URL.
        own = {key: value for key, value in account.settings.items() if key in ACCOUNT_SETTING_KEYS}
        env = {**self.stack_env, **own}
        key = tuple(sorted(env.items()))
        with self._lock:
            found = self._settings.get(key)
        if found is None:
            found = Settings.from_env(env, need_aws=True, need_secret=False)
            with self._lock:
                self._settings[key] = found
        return found

    def dependencies(self, account: Account) -> Dependencies:
        settings = self.settings_for(account)
        incidents = DynamoDBIncidentStore(
            self.store.table_name, sharing=self.store, clock=self.clock, pk=incidents_partition(account.id)
        )
        with self._lock:
            known = self._incidents.get(account.id)  # None: this container has not read them yet
        return Dependencies(
            settings=settings,
            store=self.store,
            credentials=HostedCredentials(self.vault, account, self.addresses),
            clock=self.clock,
            pool=self.pool,
            monotonic=self.monotonic,
            incidents=incidents,
            alerts=None,  # a person hears of their incidents on their Nightscout; the operator by alarms
            known_incidents=known,
            secret_hint=HOSTED_HINT,
            fingerprint=sealed_fingerprint,  # stored inside the account's KMS ciphertext only
        )

    def _remember_incidents(self, account_id: str, known: KnownIncidents | None) -> None:
        with self._lock:
            self._incidents[account_id] = known
            self._incidents.move_to_end(account_id)
            while len(self._incidents) > INCIDENT_MEMORY:
                self._incidents.popitem(last=False)


def _run_deadline_s(ends: float | None) -> float:
    """A run's deadline, from now: RUN_DEADLINE_S, less when the batch must return (`ends`, monotonic) before
    the run could store what it did after it."""
    if ends is None:
        return RUN_DEADLINE_S
    return min(RUN_DEADLINE_S, ends - time.monotonic() - AFTER_DEADLINE_S)


def _message(record: Mapping[str, Any]) -> tuple[str, int, int] | None:
    """(account id, due minute, interval) of a dispatch message, or None."""
    try:
        body = json.loads(str(record.get("body", "")))
        return str(body["account"]), int(body["due"]), int(body.get("interval", 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _unfinished(record: Mapping[str, Any], future: Future[Outcome]) -> Outcome:
    """The outcome of an account the batch could not wait for."""
    parsed = _message(record)
    account_id = parsed[0] if parsed is not None else ""
    if future.cancelled():  # never started: nothing was claimed, SQS delivers it again
        log.warning(
            "Account %s: no time left in this invocation; the message is retried",
            account_id,
            extra={"account": account_id},
        )
        return Outcome(account=account_id, status="error", reason="no_time")
    # Started and claimed, maybe uploaded: not delivered again (the next interval is the retry).
    log.error(
        "Account %s: the run did not end within the invocation's time; the next interval retries",
        account_id,
        extra={"account": account_id},
    )
    return Outcome(account=account_id, status="failed", reason="timeout")
