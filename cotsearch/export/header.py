"""A model file's header, read without torch and without reading a tensor: the tensor list
(names, shapes, dtypes) and the metadata. Everything load_model checks before a file costs
memory comes from here, and the command line uses it to tell a model file of ours from a
user's file it must not overwrite."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open

from cotsearch.errors import ModelFileError
from cotsearch.files import require_file

SPEC_KEY = "cotsearch.spec"
EXTRA_KEY = "cotsearch.extra"
VERSION_KEY = "cotsearch.format_version"
DIGEST_KEY = "cotsearch.digest"

# safetensors parses the whole JSON header before anything can be checked, at about twelve
# times its size in memory here (a 76 MB header took 0.9 GB), and admits headers of up to
# 100 MB. se_cotnetd_152's is 178 KB, and the largest spec the schema admits (8 stages of 64
# blocks) needs about 2 MB: a longer header is refused from the file's first 8 bytes, the
# header's length in the safetensors format.
MAX_HEADER_BYTES = 8 << 20


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str  # as safetensors names it: F32, F16, BF16, I64, I8, ...

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensors a safetensors file says it holds, and its metadata. safetensors has checked
    on opening that the tensors' byte ranges fit their shapes and dtypes and cover the file
    exactly (a header that claims more than the file holds is refused)."""
    path = Path(path)
    require_file(path, "model file", ModelFileError)
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file; expected a model file (.safetensors)")
    try:
        with path.open("rb") as f:
            prefix = f.read(8)
        if len(prefix) == 8 and (claimed := int.from_bytes(prefix, "little")) > MAX_HEADER_BYTES:
            raise ModelFileError(f"{path}: its header claims {claimed:,} bytes; a model file's header is at most "
                                 f"{MAX_HEADER_BYTES:,} (not a cotsearch model file, or a damaged one)")
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            slices = {key: f.get_slice(key) for key in f.keys()}
            tensors = {key: TensorInfo(tuple(s.get_shape()), s.get_dtype()) for key, s in slices.items()}
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read: {e.strerror}") from None
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as e:
        raise ModelFileError(f"{path}: not a valid safetensors file ({str(e).splitlines()[0][:120]})") from None
    return tensors, metadata


def is_model_file(path: str | Path) -> bool:
    """Whether `path` is a cotsearch model file (one a command may overwrite)."""
    try:
        return SPEC_KEY in read_header(path)[1]
    except ModelFileError:
        return False
