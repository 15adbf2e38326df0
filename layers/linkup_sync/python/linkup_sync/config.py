"""Reading configuration from an environment: the one pattern of the three handlers and the command line.

Each handler's settings class (settings.Settings, hosted.settings.DispatcherSettings and WorkerSettings)
reads its variables through an EnvReader. A getter never raises: a wrong value is recorded as a problem
that names the variable, the cause and the fix, and the getter returns the default so the others can
still be read. `done()` then raises one ConfigError listing every problem, so a person fixes all of them
in one go instead of one per deploy.

The reader is handed the environment (`os.environ` by the handler, a dict in tests); it never looks at
the process environment itself, so what a handler reads is what it was given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

from .errors import ConfigError

# The words a true/false setting accepts, in either case (nightscout-librelink-up's and the template's).
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})

T = TypeVar("T")


class EnvReader:
    """Typed getters over one environment, collecting every problem instead of raising at the first."""

    def __init__(self, env: Mapping[str, str], *, heading: str = ConfigError.DEFAULT_HEADING) -> None:
        self.env = env
        self.heading = heading
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        """Record a problem found by a check that spans several variables."""
        self.problems.append(text)

    def raw(self, name: str, default: str = "") -> str:
        """The value exactly as set, spaces included (`default` only when unset): for messages that quote
        what the person wrote, and for checks that take an empty value for a wrong one."""
        return self.env.get(name, default)

    def text(self, name: str, default: str = "") -> str:
        """The value without surrounding spaces; `default` when unset or blank."""
        return self.env.get(name, "").strip() or default

    def optional(self, name: str) -> str | None:
        """The value without surrounding spaces; None when unset or blank."""
        return self.text(name) or None

    def required(self, name: str, why: str) -> str:
        """A value the stack always sets; `why` completes "NAME is not set: ..." with what it must name."""
        value = self.text(name)
        if not value:
            self.problem(f"{name} is not set: {why}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        """true/false (also 1/0, yes/no, on/off, any case); empty is false, unset is `default`."""
        raw = self.env.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in TRUE_WORDS:
            return True
        if value in FALSE_WORDS:
            return False
        self.problem(f"{name} must be true or false, not '{raw}'.")
        return default

    def whole_number(self, name: str, default: int, low: int, high: int, *, unit: str) -> int:
        """A whole number from `low` to `high` (both included); `default` when unset or blank."""
        text = self.text(name, str(default))
        if text.isdigit() and low <= int(text) <= high:
            return int(text)
        self.problem(f"{name} must be a whole number of {unit} from {low} to {high}, not '{text}'.")
        return default

    def choice(self, name: str, allowed: Collection[str], default: str, *, explain: str) -> str:
        """One of `allowed` (given in lower case; the value is compared in lower case). `explain` completes
        "NAME must be ..." with the choices and what each does."""
        value = self.text(name).lower() or default
        if value in allowed:
            return value
        self.problem(f"{name} must be {explain}, not '{self.raw(name)}'.")
        return default

    def matching(self, name: str, pattern: str | re.Pattern[str], default: str, *, explain: str) -> str:
        """A value that matches `pattern`; `explain` completes "NAME must be ..." with what fits."""
        value = self.text(name, default)
        if re.match(pattern, value):
            return value
        self.problem(f"{name} must be {explain}, not '{value}'.")
        return default

    def checked(self, value: str, check: Callable[[str], T], fallback: T) -> T:
        """`value` turned into a T by `check`, which raises ValueError with the whole problem (cause and
        fix); `fallback` when it does."""
        try:
            return check(value)
        except ValueError as exc:
            self.problem(str(exc))
            return fallback

    def done(self) -> None:
        """Raise one ConfigError naming every problem found, or return when there is none."""
        if self.problems:
            raise ConfigError(self.problems, heading=self.heading)
