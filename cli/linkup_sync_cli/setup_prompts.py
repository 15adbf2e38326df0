"""`linkup-sync setup`'s questions: one at a time, each answer checked before the next.

An answer comes from the environment variable of the same name when it is set (the secret's keys and the
template's parameter names), otherwise it is asked. With --yes nothing is asked: a missing or wrong answer
ends the set-up with the variable's name and the reason. Passwords and tokens are read without echo
(getpass) and never printed; the functions that read answers are injectable, so the tests drive them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TextIO

Check = Callable[[str], "str | None"]  # None: the answer is fine; else the reason it is not


class SetupAborted(Exception):
    """The set-up stops here; the message says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StepFailed(Exception):
    """One step's answers did not pass its check: the step is asked again, with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Asker:
    def __init__(
        self,
        env: Mapping[str, str],
        out: TextIO,
        *,
        yes: bool,
        ask: Callable[[str], str],
        ask_secret: Callable[[str], str],
    ) -> None:
        self.env = env
        self.out = out
        self.yes = yes
        self._ask = ask
        self._ask_secret = ask_secret
        self._spent: set[str] = set()  # variables whose value failed a step's check: asked for instead

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _read(self, prompt: str, secret: bool) -> str:
        try:
            return (self._ask_secret if secret else self._ask)(prompt)
        except EOFError:
            raise SetupAborted("the input ended before every question was answered.") from None

    def from_env(self, name: str) -> str | None:
        if name in self._spent:
            return None
        value = self.env.get(name, "")
        return value if value.strip() else None

    def spend(self, *names: str) -> None:
        """A step with these answers failed: do not take them from the environment again."""
        self._spent.update(names)
        if self.yes:
            given = [n for n in names if self.env.get(n, "").strip()]
            if given:
                raise SetupAborted(f"fix {', '.join(given)} (see the reason above); --yes asks no questions.")

    def answer(
        self,
        name: str,
        question: str,
        *,
        default: str | None = None,
        secret: bool = False,
        check: Check | None = None,
        optional: bool = False,
    ) -> str:
        """The answer for `name` (an environment variable's name), checked with `check`."""

        def problem_of(value: str) -> str | None:
            if not value and not optional:
                return "an answer is needed."
            return check(value) if check is not None and value else None

        given = self.from_env(name)
        if given is not None:
            value = given if secret else given.strip()
            problem = problem_of(value)
            if problem is None:
                self.say(f"{question}: {'(not shown)' if secret else value} (from {name})")
                return value
            if self.yes:
                raise SetupAborted(f"{name}: {problem}")
            self.say(f"✘ {name}: {problem}")
        if self.yes:
            if default is not None or optional:
                value = default or ""
                self.say(f"{question}: {value or '(none)'} (the default)")
                return value
            if name.startswith("TARGETS ("):  # one person of several: an entry of the TARGETS list, not a variable
                raise SetupAborted(
                    f"--yes asks no questions, and {name} is missing: add an entry for this person to the "
                    "environment variable TARGETS, with LINK_UP_CONNECTION (the person's patientId), NIGHTSCOUT_URL "
                    "and NIGHTSCOUT_API_TOKEN, as in the secret."
                )
            raise SetupAborted(f"{name} is not set, and --yes asks no questions: set the environment variable {name}.")
        while True:
            hint = f" [{default}]" if default else (" (Enter for none)" if optional else "")
            raw = self._read(f"{question}{hint}: ", secret)
            value = raw if secret else raw.strip()
            if not value and default is not None:
                value = default
            problem = problem_of(value)
            if problem is None:
                return value
            self.say(f"✘ {problem} Please try again.")

    def confirm(self, question: str) -> None:
        """Wait until the person has done something (press Enter); --yes cannot wait: stop instead."""
        if self.yes:
            raise SetupAborted(question + " Then run the set-up again.")
        self._read(question + " Press Enter when done. ", False)
