"""Files written whole or not at all: a temporary file in the same folder, then a rename,
so a reader (or a crash) never sees half a file; and the checks, made before any work, that
an output can be written and would not overwrite a file cotsearch did not write."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from cotsearch.errors import CotsearchError

SOFTWARE = "cotsearch"  # the Software text of the PNGs it writes: how it knows its own


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


def figure_png(fig, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes, marked as cotsearch's (see is_our_figure). Built as a
    plain `Figure` (not through pyplot), it needs no GUI backend and no global backend switch."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": SOFTWARE})
    return buffer.getvalue()


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """A matplotlib figure written atomically as PNG."""
    atomic_write_bytes(path, figure_png(fig, dpi))


def is_our_figure(path: str | Path) -> bool:
    """Whether `path` is a PNG that cotsearch wrote (its Software text says so)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get("Software") == SOFTWARE
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def opens_with(path: str | Path, marker: bytes, within: int) -> bool:
    """Whether `marker` is among the first `within` bytes of the file at `path`."""
    try:
        with open(path, "rb") as f:
            return marker in f.read(within)
    except OSError:
        return False


def require_file(path: str | Path, what: str, error: type[CotsearchError] = CotsearchError) -> None:
    """`path` exists, else `error` saying so (torch-free: commands check before loading torch)."""
    if not Path(path).exists():
        raise error(f"{path}: no such {what}")


def require_folder(path: str | Path) -> None:
    """For a writer that does not create folders: the folder `path` goes in exists."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CotsearchError(f"{path}: cannot write: no such directory {path.parent}")


def check_writable(path: str | Path, option: str, ours: Callable[[Path], bool] | None = None, kind: str = "") -> None:
    """Fail before long work, not after it, when `path` cannot be written: a directory or
    anything else that is not a plain file, or no folder it can go in. Given `ours` (which
    tells a `kind` of file that cotsearch writes), an existing file that is not one is refused
    too: a user's own file is never overwritten."""
    path = Path(path)
    if path.is_dir():
        raise CotsearchError(f"{option} {path}: is a directory; expected a file path")
    if path.exists() and not path.is_file():
        raise CotsearchError(f"{option} {path}: is not a plain file; expected a file path")
    folder = next((p for p in path.absolute().parents if p.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise CotsearchError(f"{option} {path}: cannot be written (no writable folder {path.parent})")
    if ours is not None and path.exists() and not ours(path):
        raise CotsearchError(f"{option} {path}: exists and is not {kind}; it is not overwritten "
                             "(move it away or choose another path)")
