"""The console of ``emkit run``: one progress line per unit, the plan and the summary; library chatter to run.log.

Without this, a run's terminal interleaves TRL's per-step loss dicts, datasets' "Truncating train dataset" bars,
transformers' "Loading weights" bars and library warnings. :class:`RunConsole` owns a run's output:

- While a unit runs, ``sys.stdout``/``sys.stderr`` are :class:`_Sink` objects that turn library prints, tqdm bars
  and Python warnings into ``run.log`` lines (a bar redrawn with ``\\r`` keeps only its last state).
- The loggers of the ML libraries (:data:`LIBRARY_LOGGERS`) write to ``run.log`` only, for the whole run.
- With ``show=True`` (the CLI's default) the terminal gets the plan, one line per unit (kind, label, done/total,
  elapsed, ETA, e.g. the latest loss), emkit's warnings and errors, and the summary: a live rich display on a
  terminal, plain lines in a pipe or a log file (a start line, a line a minute for long units, an end line).
  emkit's own info messages during a unit go to ``run.log`` (the unit's line is its voice); warnings always show.
- With ``show=False`` (``run(..., progress=False)``, ``--no-progress``) nothing is drawn and the stages get
  ``progress=False``; library chatter still goes to ``run.log``, emkit's messages wherever logging sends them.

Only Python-level writes are redirected: a C extension writing to file descriptor 2 still reaches the terminal.
Exceptions are never swallowed: a failing unit's line says so, and the error propagates to the caller.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from emkit.experiment._units import RUN_LOG

LIBRARY_LOGGERS = ("transformers", "trl", "datasets", "peft", "accelerate", "sentence_transformers",
                   "huggingface_hub", "torch", "tokenizers", "filelock", "fsspec", "urllib3", "httpx", "httpcore",
                   "matplotlib", "PIL", "numexpr", "vllm", "ray", "openai", "py.warnings")
LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"  # the format of run_log's lines
WORK_NAMES = {"train": "steps", "sample": "answers", "judge": "answers", "report": "report"}
# Plain (non-terminal) output: one progress line per long unit at most this often.
PLAIN_EVERY_S = 60.0
# emkit.experiment INFO records with this attribute set are for run.log only (the console draws them itself).
LOG_ONLY = "emkit_log_only"


def _fmt_s(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class _Sink(io.TextIOBase):
    """A stand-in for sys.stdout/sys.stderr during a unit: complete lines go to a run.log logger.

    After :meth:`close` (the unit is over) writes go to whatever ``sys.<name>`` is then, so a library that kept a
    reference (transformers' default log handler, a tqdm bar) keeps working after the run.
    """

    def __init__(self, name: str, logger: logging.Logger, original: TextIO) -> None:
        super().__init__()
        self.name, self._logger, self._original = name, logger, original
        self._buffer = ""
        self._lock = threading.Lock()
        self._open = True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False  # libraries draw plain, not interactive, output into run.log

    def fileno(self) -> int:
        return self._original.fileno()  # code that needs a real descriptor gets the terminal's

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not self._open:
            target = getattr(sys, self.name)
            return (target if target is not self else sys.__stderr__).write(text)
        with self._lock:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            # A bar redrawn in place: only what follows the last carriage return is its state.
            self._buffer = self._buffer.rsplit("\r", 1)[-1]
        for line in lines:
            line = line.rsplit("\r", 1)[-1].rstrip()
            if line.strip():
                self._logger.info("%s", line)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._open:
            rest = self._buffer.rsplit("\r", 1)[-1].rstrip()
            if rest.strip():
                self._logger.info("%s", rest)
            self._buffer = ""
            self._open = False


class _ConsoleHandler(logging.Handler):
    """Root-logger handler while the console shows: emkit's messages to the terminal by the rules above."""

    def __init__(self, console: RunConsole) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("emkit"):
            return  # a library's record that propagated: run.log has it
        if record.levelno < logging.WARNING:
            if getattr(record, LOG_ONLY, False) or self.console.in_unit:
                return
            if not record.name.startswith("emkit.experiment"):
                return
        try:
            self.console.message(record.getMessage(), record.levelno)
        except Exception:  # noqa: BLE001 - logging must never raise into the run
            self.handleError(record)


class RunConsole:
    """One run's output (see the module docs). Use :func:`run_console`; units go through :meth:`unit`."""

    def __init__(self, run_dir: Path, show: bool, stream: TextIO | None = None, live: bool | None = None) -> None:
        from rich.console import Console

        self.run_dir = run_dir
        self.show = show
        self.stream = stream if stream is not None else sys.stderr
        self.console = Console(file=self.stream, highlight=False, soft_wrap=False)
        self.live = self.console.is_terminal if live is None else live
        self.in_unit = False
        self._progress: Any = None
        self._overall: Any = None
        self._started = time.time()
        self._spent_est = 0.0
        self._total_est = 0.0
        self._saved_loggers: dict[str, tuple[list[logging.Handler], bool]] = {}
        self._saved_root: list[logging.Handler] = []
        self.file_handler = logging.FileHandler(run_dir / RUN_LOG, encoding="utf-8")
        self.file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self.library_lines = 0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> RunConsole:
        self.sweep_libraries()
        if self.show:
            root = logging.getLogger()
            self._saved_root = list(root.handlers)
            for handler in self._saved_root:
                root.removeHandler(handler)
            root.addHandler(_ConsoleHandler(self))
        return self

    def __exit__(self, *exc: object) -> None:
        self.end_units()
        if self.show:
            root = logging.getLogger()
            for handler in list(root.handlers):
                if isinstance(handler, _ConsoleHandler):
                    root.removeHandler(handler)
            for handler in self._saved_root:
                root.addHandler(handler)
        self._restore_libraries()
        self.file_handler.close()

    def start_units(self, units: list[Any], name: str) -> None:
        """Before the first unit: the live display (on a terminal) with an overall line (units done, run ETA
        scaled from the estimates)."""
        self._total_est = sum(u.estimate_s for u in units) or 1.0
        self._started = time.time()
        if self.show and self.live and self._progress is None:
            self._progress = _live_progress(self.console)
            self._progress.start()
            self._overall = self._progress.add_task(f"{name}: all units", total=len(units), mark=" ", unit="units",
                                                    info="", eta="")

    def end_units(self) -> None:
        """After the last unit: the live display stops (its final state stays on screen); later lines follow."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._overall = None

    # ------------------------------------------------------------------ libraries

    def sweep_libraries(self) -> None:
        """Route the ML libraries' loggers to run.log only (again after each unit: a library imported during a
        unit, like transformers, adds its own stderr handler then)."""
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            if name not in self._saved_loggers:
                self._saved_loggers[name] = ([], logger.propagate)
            saved = self._saved_loggers[name][0]
            for handler in list(logger.handlers):
                if handler is not self.file_handler:
                    logger.removeHandler(handler)
                    saved.append(handler)
            if self.file_handler not in logger.handlers:
                logger.addHandler(self.file_handler)
            logger.propagate = False

    def _restore_libraries(self) -> None:
        for name, (handlers, propagate) in self._saved_loggers.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self.file_handler)
            for handler in handlers:
                if handler not in logger.handlers:
                    logger.addHandler(handler)
            logger.propagate = propagate
        self._saved_loggers.clear()

    @contextmanager
    def _redirected(self) -> Iterator[None]:
        out_log, err_log = logging.getLogger("stdout"), logging.getLogger("stderr")
        for logger in (out_log, err_log):
            logger.propagate = False
            logger.setLevel(logging.INFO)
            if self.file_handler not in logger.handlers:
                logger.addHandler(self.file_handler)
        old_out, old_err = sys.stdout, sys.stderr
        sinks = (_Sink("stdout", out_log, old_out), _Sink("stderr", err_log, old_err))
        sys.stdout, sys.stderr = sinks
        try:
            yield
        finally:
            sys.stdout, sys.stderr = old_out, old_err
            for sink in sinks:
                sink.close()
            for logger in (out_log, err_log):
                logger.removeHandler(self.file_handler)

    # ------------------------------------------------------------------ units

    @contextmanager
    def unit(self, unit: Any, index: int, count: int) -> Iterator[Any]:
        """Run one unit under the console; yields the stages' ``progress`` (a hook when showing, else None)."""
        line = _UnitLine(self, unit, index, count) if self.show else None
        self.sweep_libraries()
        self.in_unit = True
        error: BaseException | None = None
        try:
            with self._redirected():
                yield line
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.in_unit = False
            self._spent_est += unit.estimate_s
            self.sweep_libraries()
            if line is not None:
                line.finish(error)

    def run_eta(self) -> str:
        """Remaining time of the run: the estimates of the units left, scaled by how the finished ones went."""
        if self._spent_est <= 0:
            return ""
        remaining = (time.time() - self._started) / self._spent_est * (self._total_est - self._spent_est)
        return _fmt_s(remaining) if remaining >= 1 else ""

    # ------------------------------------------------------------------ output

    def message(self, text: str, level: int = logging.INFO) -> None:
        """A line above the progress display (or plain); warnings and errors are marked."""
        from rich.markup import escape

        if level >= logging.ERROR:
            text = f"[bold red]error:[/] {escape(text)}"
        elif level >= logging.WARNING:
            text = f"[yellow]warning:[/] {escape(text)}"
        else:
            text = escape(text)
        target = self._progress.console if self._progress is not None else self.console
        target.print(text, highlight=False, soft_wrap=True)


class _UnitLine:
    """The progress hook of one unit (``emkit._progress``): a live row, or plain start / progress / end lines."""

    def __init__(self, console: RunConsole, unit: Any, index: int, count: int) -> None:
        self.console, self.unit, self.index, self.count = console, unit, index, count
        self.what = WORK_NAMES.get(unit.kind, "items")
        self.total: int | None = unit.work or None
        self.done = 0
        self.info = ""
        self.started = time.time()
        self.last_plain = self.started
        self.task = None
        progress = console._progress
        if progress is not None:
            self.task = progress.add_task(unit.label, total=self.total or 1, mark="…", unit=self.what, info="",
                                          eta="")
        else:
            eta = console.run_eta()
            console.message(f"[{index}/{count}] {unit.label}: {unit.work} {self.what}"
                            + (f" (run ETA {eta})" if eta else ""))

    def __call__(self, done: int, total: int | None = None, info: str = "") -> None:
        self.done = int(done)
        if total:
            self.total = int(total)
        if info:
            self.info = info
        progress = self.console._progress
        if progress is not None and self.task is not None:
            progress.update(self.task, completed=self.done, total=self.total or 1, info=self.info,
                            eta=self._eta())
        elif time.time() - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = time.time()
            eta = self._eta()
            self.console.message(f"[{self.index}/{self.count}] {self.unit.label}: {self.done}/{self.total or '?'} "
                                 f"{self.what}, {_fmt_s(time.time() - self.started)}"
                                 + (f", {eta}" if eta else "") + (f", {self.info}" if self.info else ""))

    def _eta(self) -> str:
        if not self.total or self.done <= 0 or self.done >= self.total:
            return ""
        elapsed = time.time() - self.started
        return f"ETA {_fmt_s(elapsed / self.done * (self.total - self.done))}"

    def finish(self, error: BaseException | None) -> None:
        seconds = time.time() - self.started
        console = self.console
        progress = console._progress
        if error is None:
            total = self.total or 1
            if progress is not None and self.task is not None:
                progress.update(self.task, completed=total, total=total, mark="[green]✓[/]", eta="", info=self.info)
                progress.stop_task(self.task)
                if console._overall is not None:
                    eta = console.run_eta()
                    progress.update(console._overall, advance=1, eta=f"ETA {eta}" if eta else "")
            else:
                console.message(f"[{self.index}/{self.count}] {self.unit.label}: done, {total}/{total} "
                                f"{self.what} in {_fmt_s(seconds)}" + (f" ({self.info})" if self.info else ""))
            return
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else f"failed ({type(error).__name__})"
        if progress is not None and self.task is not None:
            progress.update(self.task, mark="[red]✗[/]", eta="", info=f"[red]{reason}[/]")
            progress.stop_task(self.task)
        console.message(f"[{self.index}/{self.count}] {self.unit.label}: {reason} after {_fmt_s(seconds)}; "
                        f"library messages are in {console.run_dir / RUN_LOG}", logging.WARNING)


def _live_progress(console: Any) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column

    return Progress(
        TextColumn("{task.fields[mark]}"),
        TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
        BarColumn(bar_width=20),
        TextColumn("{task.completed:>4.0f}/{task.total:.0f} {task.fields[unit]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
        console=console, redirect_stdout=False, redirect_stderr=False, expand=True,
        refresh_per_second=4,
    )


@contextmanager
def run_console(run_dir: Path, show: bool) -> Iterator[RunConsole]:
    """The console of one run (see the module docs)."""
    console = RunConsole(run_dir, show)
    with console:
        yield console
