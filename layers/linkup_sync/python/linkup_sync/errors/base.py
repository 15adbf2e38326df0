"""The base of every error, and the configuration's (settings, secret): see the package's docstring."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..report import RunReport


class LinkupSyncError(Exception):
    """Base class of every error this package raises on purpose."""

    reason = "error"
    #: True when only the person can fix it (credentials, terms, version): alarm at once.
    needs_person = False
    #: What the failed run got to (runtime.run_once sets it): the failure metrics and doctor read it.
    report: RunReport | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- configuration ------------------------------------------------------------------------------


class ConfigError(LinkupSyncError):
    """The settings or the secret are wrong. Lists every problem at once."""

    reason = "config"
    needs_person = True
    DEFAULT_HEADING = "linkup-sync is not configured correctly"

    def __init__(self, problems: list[str], *, heading: str = DEFAULT_HEADING) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{heading}:\n{lines}")


class SecretError(ConfigError):
    """The Secrets Manager secret is missing, empty or lacks keys."""

    reason = "secret"
