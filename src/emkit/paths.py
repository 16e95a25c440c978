"""Where emkit keeps caches and finds reference data.

- ``EMKIT_CACHE_DIR`` (default ``~/.cache/emkit``): converted models, downloaded datasets.
- ``EMKIT_DATA_MIRROR``: a folder laid out as ``DIR/<source>/<path>`` that replaces upstream downloads
  (tests and CI point it at ``../shared/data``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """The root cache folder (created on first use)."""
    root = Path(os.environ.get("EMKIT_CACHE_DIR") or Path.home() / ".cache" / "emkit").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_mirror() -> Path | None:
    """The local data mirror from ``EMKIT_DATA_MIRROR``, or None when unset."""
    value = os.environ.get("EMKIT_DATA_MIRROR")
    return Path(value).expanduser() if value else None


def offline() -> bool:
    """True when network access to model/data hubs must not be attempted."""
    return any(os.environ.get(v, "") not in ("", "0", "false") for v in ("HF_HUB_OFFLINE", "EMKIT_OFFLINE"))


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Write ``path`` via a temporary file in the same folder and rename at the end.

    A crash mid-write leaves the old file (or nothing), never a torn one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 minus the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
