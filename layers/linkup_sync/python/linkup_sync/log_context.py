"""The account a log line belongs to: the hosted worker runs a batch's accounts side by side in threads.

A context variable holds the account of the code running now (each thread has its own), and a filter on
the package's logger "linkup_sync" (every module logs through it) copies it into each record as the field
`account`, which the JSON log lines of Powertools show. A line that names its account itself keeps it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

PACKAGE_LOGGER = "linkup_sync"
_ACCOUNT: ContextVar[str | None] = ContextVar("linkup_sync_account", default=None)


class AccountField(logging.Filter):
    """Adds `account` to every record logged while an account runs (never replaces one given)."""

    def filter(self, record: logging.LogRecord) -> bool:
        account = _ACCOUNT.get()
        if account is not None and "account" not in record.__dict__:
            record.account = account
        return True


_FIELD = AccountField()


def install() -> None:
    """Put the filter on the package's logger once (before threads log: the filter list is not locked)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    if _FIELD not in logger.filters:
        logger.addFilter(_FIELD)


def current_account() -> str | None:
    return _ACCOUNT.get()


@contextlib.contextmanager
def account_logs(account_id: str) -> Iterator[None]:
    """Every log line of this thread, until the block ends, carries `account_id`."""
    token = _ACCOUNT.set(account_id)
    try:
        yield
    finally:
        _ACCOUNT.reset(token)
