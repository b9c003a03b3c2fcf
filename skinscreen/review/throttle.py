"""Sign-in throttling: per (account name, client address) and per client address, in server memory.

Every attempt counts from the moment it starts (so parallel guesses count too), and a successful one
is taken back together with the earlier failures of its name from that address. Once a name has
`PER_NAME` attempts from one address, or an address `PER_ADDRESS` attempts, in the last `WINDOW`
seconds, further attempts are refused with 429 and Retry-After, before any password is checked: an
attacker no longer costs the server argon2 work. Unknown names are counted like known ones, so the
answers do not tell them apart. The lock-out is per address on purpose: guessing from one address
cannot lock the account's owner out of it from another.

The counts live in one process: several server processes each keep their own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW = 900.0
"""Seconds an attempt counts against its name and address."""
PER_NAME = 5
"""Attempts on one account name from one address within WINDOW (a reviewer mistyping a few times stays
under it)."""
PER_ADDRESS = 20
"""Attempts from one client address within WINDOW, whatever the names."""


class ThrottledError(Exception):
    """Raised when a sign-in attempt comes too soon; `retry_after` is in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many sign-in attempts; retry in {retry_after} s")
        self.retry_after = retry_after


class SignInThrottle:
    """Sliding-window counts of sign-in attempts by (name, address) and by address."""

    def __init__(
        self,
        *,
        window: float = WINDOW,
        per_name: int = PER_NAME,
        per_address: int = PER_ADDRESS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window, self.per_name, self.per_address = window, per_name, per_address
        self._clock = clock
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._attempts.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def begin(self, *, name: str, address: str | None) -> float:
        """Count an attempt; ThrottledError when the name from this address, or the address, had too many."""
        keys = [(_pair(name, address), self.per_name), ("addr:" + (address or "?"), self.per_address)]
        now = self._clock()
        with self._lock:
            waits = []
            for key, limit in keys:
                times = self._recent(key, now)
                if len(times) >= limit:
                    waits.append(times[len(times) - limit] + self.window - now)
            if waits:
                raise ThrottledError(max(1, math.ceil(max(waits))))
            for key, _ in keys:
                self._attempts[key].append(now)
            if len(self._attempts) > 100_000:  # bound the memory a flood of names can take
                self._attempts = {k: v for k, v in self._attempts.items() if v and v[-1] > now - self.window}
        return now

    def succeeded(self, *, name: str, address: str | None, started: float) -> None:
        """A right password: forget the name's attempts from this address and take this one back."""
        with self._lock:
            self._attempts.pop(_pair(name, address), None)
            times = self._attempts.get("addr:" + (address or "?"))
            if times is not None and started in times:
                times.remove(started)


def _pair(name: str, address: str | None) -> str:
    return f"name:{address or '?'}\0{name[:200]}"
