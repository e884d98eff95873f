"""Ctrl-C, SIGTERM and SIGHUP stop a command the same way.

Slurm, Kubernetes, systemd and a plain `kill` ask a process to stop with SIGTERM before they
send SIGKILL; a closed terminal sends SIGHUP. While a `handling()` block runs, each of them
raises `Stopped`, a KeyboardInterrupt, at whatever line the main thread runs, so the code that
handles Ctrl-C handles all three (a search records its running trials as interrupted and
releases its run directory), and the command exits with the shell's code for the signal,
128 + its number: 130, 143, 129.

The first signal is remembered (`pressed`): where its KeyboardInterrupt is swallowed (Ray
releases object references in `__del__`, whose exceptions Python prints as "ignored" and
drops), `raise_if_pressed` raises it again. Once one has come, the next ends the process at
once, without waiting for the first one's clean-up.

Blocks nest: the command line handles the whole command, and a search once more around each
Ray Tune run, because `ray.init` puts its own SIGTERM handling in place (a C++ stack dump, then
`sys.exit`), which installing ours again replaces. Leaving an inner block puts the outer block's
handling back; leaving the outermost, what was there before it. Python's `signal` module is the
only way to do this; no library does it for us.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal, raised where Ctrl-C's KeyboardInterrupt would be. Code that calls into
    Ray may see a plain KeyboardInterrupt instead (Ray's C++ waits raise their own): which
    signal it was, the StopSignals blocks remember."""

    def __init__(self, signum: int = signal.SIGINT):
        self.signum = signal.Signals(signum)
        super().__init__(self.signum.name)


_blocks: list[StopSignals] = []  # the handling() blocks entered and not yet left, outermost first
_before: dict[int, object] = {}  # the handlers there were when the outermost block was entered


class StopSignals:
    """Stop signals in a block of code: which came first (`pressed`, `signum`), and the exit
    code it gives the command (128 + the signal's number)."""

    def __init__(self):
        super().__init__()
        self.pressed = threading.Event()
        self.signum = signal.SIGINT

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def raise_if_pressed(self) -> None:
        if self.pressed.is_set():
            raise Stopped(self.signum)

    @contextmanager
    def handling(self) -> Iterator[StopSignals]:
        """While inside: a stop signal raises Stopped and is remembered (main thread only;
        elsewhere signals cannot be handled and nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        if not _blocks:
            _before.update({s: signal.getsignal(s) for s in SIGNALS})
        _blocks.append(self)
        _install()
        try:
            yield self
        finally:
            _blocks.remove(self)
            if _blocks:
                _install()  # whatever replaced it in here (ray.init), the outer block's handling goes on
            else:
                for s, handler in _before.items():
                    signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: not set from Python
                _before.clear()


def _install() -> None:
    for s in SIGNALS:
        signal.signal(s, _on_signal)


def _on_signal(signum: int, frame) -> None:
    name = signal.Signals(signum).name
    if any(block.pressed.is_set() for block in _blocks):
        os.write(2, f"error: a second stop signal ({name}): stopped at once\n".encode())
        os._exit(128 + signum)
    for block in _blocks:
        block.signum = signal.Signals(signum)
        block.pressed.set()
    raise Stopped(signum)
