"""The run directory of a search: created or checked before any work, and locked while a
search runs in it, so a second process cannot run the same search at the same time."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from cotsearch.arch.yaml_io import format_validation_error
from cotsearch.errors import CotsearchError
from cotsearch.files import atomic_write_text
from cotsearch.search.space import SearchSpace

SPACE_FILE = "space.json"
LOCK_FILE = ".lock"
MIN_FREE_BYTES = 256 * 2**20


def first_difference(old: Any, new: Any, path: str = "") -> str | None:
    """The dotted path of the first value that differs between two JSON-like documents."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return next((f for i, (a, b) in enumerate(zip(old, new)) if (f := first_difference(a, b, f"{path}.{i}"))), None)
    return None if old == new else (path or "the space")


def lock_run_dir(run_dir: Path) -> IO:
    """An exclusive lock on the run directory, held as long as the returned file is open
    (the process's lifetime at most: the system drops the lock of a dead process, so a stale
    lock never blocks a resume)."""
    handle = open(run_dir / LOCK_FILE, "a+")
    _lock(handle, run_dir, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def _lock(handle: IO, run_dir: Path, mode: int) -> None:
    """Lock an open lock file (fcntl.LOCK_EX or LOCK_SH), or close it and name the process
    that holds it."""
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise CotsearchError(f"{run_dir}: a search is already running in it ({owner}); "
                             "wait for it to end or stop it, then resume") from None


def saved_space(run_dir: Path) -> SearchSpace:
    """The space a run was started with: what makes a folder a run directory."""
    saved = run_dir / SPACE_FILE
    if not saved.is_file():
        raise CotsearchError(f"--resume {run_dir}: not a cotsearch run directory (no {SPACE_FILE})")
    try:
        return SearchSpace.model_validate_json(saved.read_bytes())
    except ValidationError as e:
        raise CotsearchError(format_validation_error(e, f"--resume {saved}", SearchSpace)) from None


def check_run_dir(space: SearchSpace, run_dir: Path, resume: bool) -> None:
    """What can be known of the run directory without writing to it: resuming, that it holds
    a run of this space; starting, that it holds none and that it can be created. Cheap and
    torch-free, so the command line reports these mistakes before it starts Ray."""
    saved = run_dir / SPACE_FILE
    if resume:
        old = saved_space(run_dir)
        # eval_batch_size changes no result (runs started before its default went from 512 to 128 resume)
        same = {"search": True, "train": {"eval_batch_size"}}
        changed = first_difference(old.model_dump(mode="json", exclude=same), space.model_dump(mode="json", exclude=same))
        if changed is not None:
            raise CotsearchError(f"--resume {run_dir}: {changed} differs from the space this run was started with "
                                 "(only the search settings, such as --trials and the resources, may change)")
        if (run_dir / LOCK_FILE).exists():  # a search running in it is reported now, not once Ray has started
            with open(run_dir / LOCK_FILE) as handle:  # read-only: a shared lock (on NFS, LOCK_EX needs write access)
                _lock(handle, run_dir, fcntl.LOCK_SH)
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise CotsearchError(f"--out {run_dir}: is a file; expected a run directory")
    if saved.exists():
        raise CotsearchError(f"--out {run_dir}: already holds a run; continue it with --resume {run_dir} or choose another --out")
    if run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):  # the lock: of a start that failed
        raise CotsearchError(f"--out {run_dir}: holds other files and no run (no {SPACE_FILE}); a search starts in "
                             "an empty or new folder, so choose another --out")
    folder = run_dir if run_dir.exists() else next((p for p in run_dir.absolute().parents if p.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise CotsearchError(f"--out {run_dir}: cannot write the run directory ({folder} is not a writable folder)")


def prepare_run_dir(space: SearchSpace, run_dir: Path, resume: bool) -> tuple[SearchSpace, IO]:
    """Create (or, resuming, check) the run directory and lock it; fail now, not after an
    hour of work, when it cannot be written. Returns the space to run (resuming: the saved
    one, with the search settings taken from the command line) and the held lock."""
    check_run_dir(space, run_dir, resume)
    saved = run_dir / SPACE_FILE
    if resume:
        space = saved_space(run_dir).model_copy(update={"search": space.search})
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CotsearchError(f"--out {run_dir}: cannot write the run directory ({e.strerror})") from None
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        raise CotsearchError(f"--out {run_dir}: only {free / 2**20:.0f} MiB free on its disk; a search needs at least "
                             f"{MIN_FREE_BYTES / 2**20:.0f} MiB for its trials' weights and records")
    lock = lock_run_dir(run_dir)
    try:
        atomic_write_text(saved, space.model_dump_json(indent=2, by_alias=True))
    except OSError as e:
        lock.close()
        raise CotsearchError(f"--out {run_dir}: cannot write the run directory ({e.strerror})") from None
    return space, lock
