"""Ctrl-C, SIGTERM or SIGHUP stops a search or a sweep, wherever the driver is at that moment.

Each raises a KeyboardInterrupt at whatever line the main thread runs (cotsearch.process.signals).
Raised inside a finalizer (Ray releases its object references in `__del__`), it is printed as
"ignored" and lost, and the search would run on to its end. So the handler also remembers the
signal, and this Ray Tune callback raises it again at the start of Tune's next step, in the
driver's own loop, from where it reaches the command (which records the interrupted trials).
The handling is installed again around each Tune run, after `ray.init` has put its own
SIGTERM handler (a C++ stack dump, then `sys.exit`) in place.
"""

from __future__ import annotations

from ray import tune

from cotsearch.process.signals import StopSignals


class CtrlC(StopSignals, tune.Callback):
    def __getstate__(self) -> dict:
        return {}  # Ray pickles its callbacks with the experiment's state; the event stays here

    def __setstate__(self, state: dict) -> None:
        StopSignals.__init__(self)

    def on_step_begin(self, iteration, trials, **info):
        self.raise_if_pressed()
