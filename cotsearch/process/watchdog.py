"""A trial's time limit. A hung trial cannot report; past its limit the watchdog leaves the
reason on disk and ends the worker process, which Ray records as a failed trial (the searcher
reads the reason: records.worker_failure)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cotsearch.files import atomic_write_text

FAILURE_NOTE = "failure.txt"  # a trial's reason for failing, left where its worker could not report it


class Watchdog:
    """Runs from its creation; `seconds` None: no limit, it never fires."""

    def __init__(self, seconds: float | None, out: Path):
        self.seconds, self.out = seconds, out
        self._lock = threading.Lock()
        self._waiting = self._expired = False
        self._timer = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    @contextmanager
    def waiting_on_ray(self) -> Iterator[None]:
        """Around a report, where Ray may hold a trial that is not hung: one that ASHA stopped
        waits in its last report, its worker kept for the next trial (reuse_actors), and
        leaves by an exception when that trial starts; its worker must live on. A limit passed
        while waiting ends the trial once the report returns."""
        with self._lock:
            self._waiting = True
        try:
            yield
        finally:
            with self._lock:
                self._waiting = False
        if self._expired:  # the report returned: the trial goes on, past its limit
            self._end()

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            if self._waiting:
                return
        self._end()

    def _end(self) -> None:
        reason = f"timeout: still running after the trial_timeout_s of {self.seconds:g} s"
        atomic_write_text(self.out / FAILURE_NOTE, reason)
        os._exit(1)
