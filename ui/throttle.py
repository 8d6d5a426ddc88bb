"""A call made at most once a period, however often it is asked for: the last request is
never lost (it runs when the period has passed, in a timer thread)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Throttle:
    def __init__(self, call: Callable[[], None], period: float):
        self.call, self.period = call, period
        self._lock = threading.Lock()
        self._last = float("-inf")  # when the call last started (monotonic)
        self._timer: threading.Timer | None = None

    def request(self) -> None:
        """Run the call now if a period has passed since it last ran, else once when it has
        (requests meanwhile join that one)."""
        with self._lock:
            if self._timer is not None:
                return
            wait = self._last + self.period - time.monotonic()
            self._timer = threading.Timer(max(0.0, wait), self._run)
            self._timer.daemon = True
            self._timer.start()

    def _run(self) -> None:
        with self._lock:
            self._timer, self._last = None, time.monotonic()
        try:
            self.call()
        except Exception:  # a store gone away: the next request tries again
            log.exception("refresh failed")

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
