"""What else runs on a trial's node while it measures its latency.

A latency measured while another trial trains on the same node (same CPUs, same GPU) is
slower for a reason that is not the network's. Every trial holds the node's gate shared
while it measures or trains, so a measurement can tell whether it had the node to itself
(`latency_shared` in the trial's record). An isolated measurement (`search.latency_isolated`)
takes the gate exclusively instead: the trials training on the node pause at their next step
until it ends (about a second), so its figure is the network's alone.

The gate is two lock files per node and user in the temporary directory, taken with
flock: the system drops the locks of a process that dies, so a killed trial never blocks
the node. A turnstile in front of the gate lets a waiting measurement in before trials that
come back for their next step (flock alone could keep it waiting for as long as some trial is
always mid-step). Written here because no library offers a shared/exclusive lock between
processes (filelock's locks are exclusive only).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator


@dataclass
class Measurement:
    shared: bool = False  # another trial trained or measured on the node meanwhile


class NodeGate:
    def __init__(self, directory: Path | None = None):
        directory = directory or Path(tempfile.gettempdir()) / f"cotsearch-{os.getuid()}"
        directory.mkdir(parents=True, exist_ok=True)
        self._gate = open(directory / "node.gate", "a+")  # noqa: SIM115 -- held for the trial's life, closed in close()
        self._turnstile = open(directory / "node.turnstile", "a+")  # noqa: SIM115

    def close(self) -> None:
        self._gate.close()  # closing drops any lock held through the file
        self._turnstile.close()

    def __enter__(self) -> NodeGate:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
        measurement.shared = not self._alone()
        fcntl.flock(self._gate, fcntl.LOCK_SH)  # others measuring now see this one
        try:
            yield measurement
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
            measurement.shared |= not self._alone()  # someone started meanwhile

    @contextmanager
    def training(self) -> Iterator[Callable[..., None]]:
        """Holds the gate shared while the trial trains; call the returned function between
        steps, where an isolated measurement on the node may pause this trial."""
        def between_steps(*_) -> None:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
            fcntl.flock(self._turnstile, fcntl.LOCK_EX)
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)
            fcntl.flock(self._gate, fcntl.LOCK_SH)

        fcntl.flock(self._gate, fcntl.LOCK_SH)
        try:
            yield between_steps
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
