"""A virtual clock shared by the simulators and the code under test.

The clock is a plain callable returning seconds since the Unix epoch (like ``time.time``), so it can
be injected wherever a ``Callable[[], float]`` is expected. Time only moves when a test moves it.
"""

from __future__ import annotations

import threading

__all__ = ["VirtualClock"]


class VirtualClock:
    """Thread-safe, manually driven clock (seconds since the epoch)."""

    def __init__(self, start: float) -> None:
        self._lock = threading.Lock()
        self._now = float(start)

    def __call__(self) -> float:
        return self.now()

    def now(self) -> float:
        return self._now  # reading one float is atomic; the lock keeps advance()'s read-add-write whole

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (must not be negative); returns the new time."""
        if seconds < 0:
            raise ValueError("a VirtualClock cannot run backwards; use set() on purpose")
        with self._lock:
            self._now += float(seconds)
            return self._now

    def set(self, t: float) -> None:
        """Jump to ``t`` (backwards jumps are allowed, e.g. to model a wrong host clock)."""
        with self._lock:
            self._now = float(t)

    def __repr__(self) -> str:
        return f"VirtualClock({self.now()!r})"
