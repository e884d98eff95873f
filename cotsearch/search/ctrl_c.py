"""Ctrl-C stops a search or a sweep, wherever the driver is at that moment.

Python turns Ctrl-C into a KeyboardInterrupt at whatever line the main thread runs. Raised
inside a finalizer (Ray releases its object references in `__del__`), it is printed as
"ignored" and lost, and the search would run on to its end. So the handler also remembers
the press, and a Ray Tune callback raises it again at the start of Tune's next step, in the
driver's own loop, from where it reaches the command (which records the interrupted trials).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ray import tune


class CtrlC(tune.Callback):
    def __init__(self):
        self.pressed = threading.Event()

    def __getstate__(self) -> dict:
        return {}  # Ray pickles its callbacks with the experiment's state; the event stays here

    def __setstate__(self, state: dict) -> None:
        self.pressed = threading.Event()

    def raise_if_pressed(self) -> None:
        if self.pressed.is_set():
            raise KeyboardInterrupt

    def on_step_begin(self, iteration, trials, **info):
        self.raise_if_pressed()

    @contextmanager
    def handling(self) -> Iterator[CtrlC]:
        """While inside: Ctrl-C raises KeyboardInterrupt and is remembered (main thread only;
        elsewhere signals cannot be handled and nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def on_sigint(signum, frame):
            self.pressed.set()
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
