"""The ``progress=`` argument of the long-running stage calls (``train``, ``sample_rows``, ``score_rows``).

``progress`` is one of:

- ``True``: the stage shows its own bar (tqdm on stderr), as on the command line;
- ``False``: no bar;
- a callable ``hook(done: int, total: int | None, info: str = "")``: no bar of its own; the stage reports its
  work items (training steps, answers) to the hook as they finish, e.g. to the one-line-per-unit console of
  ``emkit run`` (``emkit.experiment._console``). ``info`` is a short status ("loss 1.92", the judge's name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressHook = Callable[..., None]
Progress = bool | ProgressHook


def shows_bar(progress: Progress) -> bool:
    """True when the stage should draw its own bar (``progress is True``; a hook means the caller draws)."""
    return progress is True


class _HookBar:
    """The ``update``/``close`` face of a tqdm bar, reporting to a hook."""

    def __init__(self, hook: ProgressHook, total: int, initial: int, info: str) -> None:
        self.hook, self.total, self.n, self.info = hook, total, initial, info
        hook(self.n, self.total, info)

    def update(self, n: int = 1) -> None:
        self.n += n
        self.hook(self.n, self.total, self.info)

    def close(self) -> None:
        pass


def bar(progress: Progress, total: int, *, desc: str, unit: str, initial: int = 0, info: str = "") -> Any:
    """A tqdm bar (``True``), a hook reporter (callable) or a disabled bar (``False``); all have update/close."""
    if callable(progress):
        return _HookBar(progress, total, initial, info)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=progress is not True, dynamic_ncols=True)
