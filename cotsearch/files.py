"""Files written whole or not at all: a temporary file in the same folder, then a rename,
so a reader (or a crash) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cotsearch.errors import CotsearchError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; the user's umask decides
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """A matplotlib figure written atomically as PNG. Built as a plain `Figure` (not through
    pyplot), it needs no GUI backend and no global backend switch."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())



def require_file(path: str | Path, what: str, error: type[CotsearchError] = CotsearchError) -> None:
    """`path` exists, else `error` saying so (torch-free: commands check before loading torch)."""
    if not Path(path).exists():
        raise error(f"{path}: no such {what}")


def require_folder(path: str | Path) -> None:
    """For a writer that does not create folders: the folder `path` goes in exists."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CotsearchError(f"{path}: cannot write: no such directory {path.parent}")


def check_writable(path: str | Path, option: str) -> None:
    """Fail before long work, not after it, when `path` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise CotsearchError(f"{option} {path}: is a directory; expected a file path")
    folder = next((p for p in path.absolute().parents if p.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise CotsearchError(f"{option} {path}: cannot be written (no writable folder {path.parent})")
