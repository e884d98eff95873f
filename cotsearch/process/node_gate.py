"""What else runs on a trial's node while it measures its latency.

A latency measured while another trial trains on the same node (same CPUs, same GPUs) is
slower for a reason that is not the network's. Every trial holds the node's gate shared
while it measures or trains, and notes its arrival, so a measurement can tell whether it had
the node to itself (`latency_shared` in the trial's record): no one held the gate when it
began and no one arrived before it ended. An isolated measurement (`search.latency_isolated`)
takes the gate exclusively instead: each trial training on the node pauses at the end of its
current step (or of an evaluation in progress) until the measurement ends, so its figure is
the network's alone. The gate is the whole node, every GPU of it included. A trial waiting
in a report, where Ray may hold it long (one that ASHA stopped, its worker kept for the next
trial), steps aside: it is not training.

The gate is a few files per node and user in the temporary directory, locked with flock:
the system drops the locks of a process that dies, so a killed trial never blocks the node
(processes it forks close their copies of the files, so they cannot keep its locks alive). A
turnstile in front of the gate lets a waiting measurement in before trials that come back for
their next step (flock alone could keep it waiting as long as some trial is always mid-step).
Written here because no library offers a shared/exclusive lock between processes (filelock's
locks are exclusive only).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# The gates open in this process. Process-wide by necessity: a fork hook (registered once, at
# the end of this module) is the only place a forked DataLoader worker can close its copies of
# the gates' files, and it is handed nothing but the process. Weak, so a gate that is gone
# leaves it by itself.
_OPEN_GATES: weakref.WeakSet[NodeGate] = weakref.WeakSet()


@dataclass
class Measurement:
    shared: bool = False  # another trial trained or measured on the node meanwhile


class NodeGate:
    def __init__(self, directory: Path | None = None):
        directory = directory or Path(tempfile.gettempdir()) / f"cotsearch-{os.getuid()}"
        directory.mkdir(parents=True, exist_ok=True)
        self._gate = open(directory / "node.gate", "a+")  # noqa: SIM115 -- held for the trial's life, closed in close()
        self._turnstile = open(directory / "node.turnstile", "a+")  # noqa: SIM115
        self._arrivals = directory / "node.arrivals"  # a byte per trial that starts to measure or train
        _OPEN_GATES.add(self)

    def close(self) -> None:
        """Closing drops any lock held through the files (in a forked child, which shares
        them with its parent, it drops only the child's hold on them)."""
        self._gate.close()
        self._turnstile.close()

    def __enter__(self) -> NodeGate:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _arrive(self) -> None:
        with open(self._arrivals, "ab") as f:
            f.write(b".")

    def _arrived(self) -> int:
        return self._arrivals.stat().st_size if self._arrivals.exists() else 0

    def _alone(self) -> bool:
        """No other trial holds the gate at this moment."""
        try:
            fcntl.flock(self._gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(self._gate, fcntl.LOCK_UN)
        return True

    @contextmanager
    def measuring(self, isolated: bool) -> Iterator[Measurement]:
        """Around a latency measurement; the Measurement says afterwards whether it was shared."""
        measurement = Measurement()
        if isolated:
            fcntl.flock(self._turnstile, fcntl.LOCK_EX)  # trials coming back for a step wait here
            fcntl.flock(self._gate, fcntl.LOCK_EX)  # until every trial mid-step has finished it
            try:
                yield measurement
            finally:
                fcntl.flock(self._gate, fcntl.LOCK_UN)
                fcntl.flock(self._turnstile, fcntl.LOCK_UN)
            return
        before = self._arrived()
        self._arrive()
        measurement.shared = not self._alone()
        fcntl.flock(self._gate, fcntl.LOCK_SH)  # others measuring now see this one
        try:
            yield measurement
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
            measurement.shared |= self._arrived() > before + 1  # someone besides this one started meanwhile

    @contextmanager
    def training(self) -> Iterator[Callable[..., None]]:
        """Holds the gate shared while the trial trains; call the returned function between
        steps, where an isolated measurement on the node may pause this trial."""
        def between_steps(*_) -> None:
            try:  # the common case: no measurement waits, and the gate stays held
                fcntl.flock(self._turnstile, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # one does: let it have the node, then come back
                fcntl.flock(self._gate, fcntl.LOCK_UN)
                fcntl.flock(self._turnstile, fcntl.LOCK_SH)
                fcntl.flock(self._gate, fcntl.LOCK_SH)
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)

        self._arrive()
        fcntl.flock(self._gate, fcntl.LOCK_SH)
        try:
            yield between_steps
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Within training(), a while without training (a report that Ray may hold): the
        node's measurements neither wait for this trial nor count it; coming back counts as
        an arrival, so a measurement that began meanwhile is marked shared."""
        fcntl.flock(self._gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            self._arrive()
            fcntl.flock(self._turnstile, fcntl.LOCK_SH)  # behind an isolated measurement that waits
            fcntl.flock(self._gate, fcntl.LOCK_SH)
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)


def _close_in_child() -> None:
    """A forked child (a DataLoader worker) closes its copies of the gate's files, never
    unlocking them: the lock is its parent's and must go when the parent goes."""
    for gate in list(_OPEN_GATES):
        gate.close()
    _OPEN_GATES.clear()


os.register_at_fork(after_in_child=_close_in_child)
