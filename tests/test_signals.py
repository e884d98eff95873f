"""SIGTERM and SIGHUP stop `tune`, `sweep` and `train` as Ctrl-C does: the running trials
recorded as interrupted, the run directory released, how to resume printed, the shell's exit
code for the signal (143, 129), no stack dump; a second signal ends the process at once; and
the run resumes without losing or repeating anything (a search stopped by SIGTERM: in
test_search's chain of stops, which resumes after each); and a stopped `analyze` leaves none of
its worker processes behind."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cotsearch.process.signals import SIGNALS, Stopped, StopSignals

from helpers import cli_train, write_space
from test_design_bench import write_design_tables


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_each_stop_signal_stops_a_block_as_ctrl_c_does(signum):
    before = {s: signal.getsignal(s) for s in SIGNALS}
    stop = StopSignals()
    with pytest.raises(KeyboardInterrupt) as raised:
        with stop.handling():
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises here
    assert isinstance(raised.value, Stopped) and raised.value.signum == signum
    assert stop.pressed.is_set() and stop.exit_code == 128 + signum
    assert {s: signal.getsignal(s) for s in SIGNALS} == before  # the handlers that were there are back


def test_a_block_inside_another_takes_sigterm_back_and_a_second_signal_ends_at_once():
    """As in a search: the command's block, then ray.init's own SIGTERM handler, then the block
    around the Tune run. After that block the command's handling is back, not Ray's, and a
    signal during the clean-up ends the process at once, with that signal's exit code."""
    code = """
import os, signal, sys, time
from cotsearch.process.signals import StopSignals
command = StopSignals()
with command.handling():
    signal.signal(signal.SIGTERM, lambda *a: sys.exit("Ray's handler"))  # as ray.init does
    try:
        with StopSignals().handling():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    except KeyboardInterrupt:
        print("stopped", command.exit_code, flush=True)
    os.kill(os.getpid(), signal.SIGHUP)  # a second signal, during the clean-up
    time.sleep(5)
    print("the clean-up went on")
"""
    started = time.time()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout == "stopped 143\n", result.stderr
    assert result.returncode == 129 and "a second stop signal (SIGHUP): stopped at once" in result.stderr
    assert time.time() - started < 5


@pytest.mark.slow
def test_sighup_stops_a_sweep_as_ctrl_c_does(tmp_path, fake_fmnist, ray_address):
    """A closed terminal sends SIGHUP: a sweep stops with its resume line, and the rows finished so
    far are in sweep.csv, readable before the rest are trained (its resumption is test_sweep's)."""
    out = tmp_path / "sweep"
    space = write_space(tmp_path, fake_fmnist, trials=1)
    proc = subprocess.Popen([sys.executable, "-m", "cotsearch.cli", "sweep", space, "--archs", "3", "--no-proxies",
                             "--max-concurrent", "1", "--out", out, "--address", ray_address],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not list(out.glob("rows/*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)  # the first row is written; one at a time, the next has only begun
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 129, err[-3000:]
    assert err.strip().splitlines()[-1] == (f"error: interrupted: the finished rows are kept in {out} ({out / 'sweep.csv'} "
                                            f"lists them); resume with the same command and --resume {out} instead of --out")
    rows = {p.stem for p in out.glob("rows/*.json")}
    with open(out / "sweep.csv") as f:
        listed = {f"{r['spec_hash']}-s{r['seed']}" for r in csv.DictReader(f)}
    assert 1 <= len(rows) < 3 and listed == rows and (out / "edf.png").stat().st_size > 0


@pytest.mark.slow
def test_sigterm_stops_training_that_then_resumes_to_the_uninterrupted_result(fake_fmnist, tmp_path,
                                                                            uninterrupted_training):
    ckpt = tmp_path / "run.safetensors"
    proc = subprocess.Popen(cli_train(fake_fmnist, "--checkpoint", ckpt), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == (f"error: interrupted; {ckpt} holds the last finished epoch: "
                                            "the same command resumes from it")

    resumed = subprocess.run(cli_train(fake_fmnist, "--checkpoint", ckpt), capture_output=True, text=True)
    assert resumed.returncode == 0 and "resumed from" in resumed.stderr, resumed.stderr[-3000:]
    a, b = json.loads(resumed.stdout.splitlines()[-1]), uninterrupted_training
    assert a["resumed_from_epoch"] >= 1
    assert [e["val_top1"] for e in a["history"]] == [e["val_top1"] for e in b["history"]]
    assert a["test_top1"] == b["test_top1"]


def _workers(pid: int) -> set[int]:
    """The pool workers a process has spawned."""
    children = {int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()}
    return {c for c in children if b"spawn_main" in open(f"/proc/{c}/cmdline", "rb").read()}


def _ctrl_c(pid: int) -> str:
    """What the process does with SIGINT: 'ignores', 'catches' (a handler) or 'default'."""
    status = {k: v.strip() for k, _, v in (line.partition(":") for line in open(f"/proc/{pid}/status"))}
    bit = {mask: int(status[mask], 16) >> (signal.SIGINT - 1) & 1 for mask in ("SigIgn", "SigCgt")}
    return "ignores" if bit["SigIgn"] else "catches" if bit["SigCgt"] else "default"


def _gone(pid: int) -> bool:
    """Ended (a zombie left for init to reap counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigkill"])
def test_a_stopped_analyze_leaves_no_worker_process(tmp_path, stop):
    """`analyze --jobs 2` runs its simulations in spawned workers. Ctrl-C, which a terminal sends
    to its whole process group: the workers ignore it from their start (a worker interrupted
    while its interpreter starts prints a traceback), the parent ends them and prints one line,
    exit code 130, no report. SIGKILL, which the parent cannot handle: the workers end too,
    rather than run their jobs on, orphaned."""
    write_design_tables(tmp_path, specs=12)
    proc = subprocess.Popen([sys.executable, "-m", "cotsearch.cli", "analyze", tmp_path / "search",
                             tmp_path / "reference", "--out", tmp_path / "out", "--budget", "8", "--runs", "5000",
                             "--jobs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stderr.readline().startswith("analyze: ")  # the workers start next
        deadline = time.time() + 60
        while (len(_workers(proc.pid)) < 2 or _ctrl_c(proc.pid) != "catches") and time.time() < deadline:
            time.sleep(0.01)  # until the parent, its workers started, takes Ctrl-C again
        workers = _workers(proc.pid)
        assert len(workers) == 2 and {_ctrl_c(pid) for pid in workers} == {"ignores"}  # their interpreters still start
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert (proc.returncode, err) == (130, "error: interrupted\n")
        else:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.time() + 60  # orphaned, a worker ends once its interpreter has started: seconds
        while not all(_gone(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in workers)
    finally:  # whatever failed, nothing of it keeps running: the analysis and its workers are one group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "out").exists()
