"""The node gate: a latency measurement knows whether another trial trained on its node, and
an isolated one pauses the trials training there. The other trials are real processes."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cotsearch.process.node_gate import NodeGate

TRAINER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cotsearch.process.node_gate import NodeGate
    gate_dir, log, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    with NodeGate(gate_dir) as gate, gate.training() as between_steps, open(log, "a") as out:
        print("training", flush=True)
        for _ in range(steps):  # steps of 2 ms; each logs when it ran
            began = time.time()
            time.sleep(0.002)
            out.write(f"{began} {time.time()}\\n")
            out.flush()
            between_steps()
""")


@pytest.fixture
def trainer(tmp_path):
    """Start a process that trains beside this one until the test ends (or kills it)."""
    started = []

    def start(steps: int = 10**9) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"steps-{len(started)}.txt"
        proc = subprocess.Popen([sys.executable, "-c", TRAINER, str(tmp_path / "gate"), str(log), str(steps)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "training"
        started.append(proc)
        return proc, log

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def steps(log: Path) -> list[tuple[float, float]]:
    return [tuple(map(float, line.split())) for line in log.read_text().splitlines() if len(line.split()) == 2]


def test_a_measurement_alone_on_its_node_is_not_shared(tmp_path):
    with NodeGate(tmp_path / "gate") as gate, gate.measuring(isolated=False) as measured:
        pass
    assert measured.shared is False


def test_a_measurement_beside_a_training_trial_is_marked_shared(tmp_path, trainer):
    trainer()
    with NodeGate(tmp_path / "gate") as gate:
        with gate.measuring(isolated=False) as measured:
            pass
        assert measured.shared is True


def test_a_trial_that_starts_training_during_a_measurement_makes_it_shared(tmp_path, trainer):
    with NodeGate(tmp_path / "gate") as gate:
        with gate.measuring(isolated=False) as measured:
            assert measured.shared is False
            trainer()
        assert measured.shared is True


def test_a_trial_that_trains_and_ends_within_a_measurement_makes_it_shared(tmp_path, trainer):
    with NodeGate(tmp_path / "gate") as gate:
        with gate.measuring(isolated=False) as measured:
            proc, _ = trainer(steps=1)
            assert proc.wait(timeout=30) == 0  # came and went: no lock of it is left to see
        assert measured.shared is True


def test_an_isolated_measurement_pauses_every_trial_training_on_the_node(tmp_path, trainer):
    logs = [trainer()[1], trainer()[1]]
    time.sleep(0.2)
    with NodeGate(tmp_path / "gate") as gate:
        with gate.measuring(isolated=True) as measured:
            began = time.time()
            time.sleep(0.5)
            ended = time.time()
    assert measured.shared is False
    time.sleep(0.2)
    for log in logs:
        ran = steps(log)
        assert any(b > ended for b, _ in ran) and any(e < began for _, e in ran)  # trained before and after
        assert not [s for s in ran if s[0] < ended and s[1] > began]  # but no step overlapped the measurement


def test_a_killed_trial_leaves_no_lock_behind(tmp_path, trainer):
    proc, _ = trainer()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open(tmp_path / "gate" / "node.gate") as f:  # free again: an exclusive lock is granted at once
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with NodeGate(tmp_path / "gate") as gate:
        with gate.measuring(isolated=False) as measured:
            pass
        assert measured.shared is False


def test_a_trial_waiting_on_ray_leaves_the_node_to_measurements(tmp_path):
    """Set aside (a report Ray holds, as it holds a stopped trial until its worker is reused),
    a training trial neither keeps an isolated measurement waiting nor makes one shared;
    training again during a measurement makes it shared."""
    with NodeGate(tmp_path / "gate") as trial, NodeGate(tmp_path / "gate") as other, trial.training():
        with trial.aside():
            measured = threading.Event()

            def measure_isolated():
                with other.measuring(isolated=True):
                    measured.set()

            isolated = threading.Thread(target=measure_isolated, daemon=True)
            isolated.start()
            assert measured.wait(10)  # it would wait for as long as the trial held the node
            isolated.join(10)
            with other.measuring(isolated=False) as alone:
                pass
        assert alone.shared is False
        with other.measuring(isolated=False) as beside:
            pass
        assert beside.shared is True
        aside = trial.aside()
        aside.__enter__()
        with other.measuring(isolated=False) as during:
            aside.__exit__(None, None, None)  # back to training mid-measurement
        assert during.shared is True
