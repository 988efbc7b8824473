"""SIGINT and SIGTERM in every process that runs a job: the job's MLflow run ends KILLED and the process exits
130 or 143 (128 + the signal), the shell's convention.

Python turns SIGINT into KeyboardInterrupt but SIGTERM (torchrun stopping the other ranks, SLURM pre-empting a job,
`kill PID`) kills the process on the spot, before any cleanup. `SignalStop` handles both alike: inside a job it
raises `Interrupted` in the main thread once, so the pipeline's cleanup closes the run; later signals are logged and
ignored, so a second Ctrl-C cannot cut that cleanup short (kill -9 can; the next use of the run directory then marks
the run KILLED, see run_directory.py). Python runs a signal handler wherever the main thread is, a garbage
collector's finalizer included, and an exception raised there is printed and dropped ("Exception ignored in ..."):
such an Interrupted is raised again (through sys.unraisablehook), so the job still stops.

Outside a job, what a signal does depends on the process. A single run stops (`raise_outside_jobs=True`). A
multirun's launching process and a joblib worker between jobs record it and go on: the sweep callback (sweep.py)
forwards it to the workers and ends the parent run KILLED when they are done, and an idle worker must not die (loky
would kill every other worker, mid-cleanup, when one exits).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

HANDLED: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A job stopped by a signal; a KeyboardInterrupt, so everything that handles Ctrl-C handles it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class SignalStop:
    """The SIGINT/SIGTERM handler of one process (see the module docstring). `signum` is the first signal the
    process received; `on_first_signal` runs once, when it arrives."""

    def __init__(self, *, raise_outside_jobs: bool, on_first_signal: Callable[[int], None] | None = None) -> None:
        self.raise_outside_jobs = raise_outside_jobs
        self.on_first_signal = on_first_signal
        self.signum: int | None = None
        self._in_job = False
        self._raised: Interrupted | None = None
        self._next_unraisable_hook: Callable[[Any], None] | None = None  # set by install()

    def __call__(self, signum: int, frame: object) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
            if self.on_first_signal is not None:
                self.on_first_signal(signum)
        if self._raised is None and (self._in_job or self.raise_outside_jobs):
            self._raised = Interrupted(signum)
            raise self._raised
        if self._raised is not None or not first:
            log.warning("%s received while stopping: ignored, so the cleanup that closes the runs can finish "
                        "(kill -9 stops at once; the next use of a run directory marks its run KILLED)",
                        signal.Signals(signum).name)

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        """The span of one job: the first signal inside it raises Interrupted."""
        self._in_job, self._raised = True, None
        try:
            yield
        finally:
            self._in_job = False

    def install(self) -> dict[int, object]:
        """Handle SIGINT and SIGTERM with this object (main thread only); returns the handlers it replaced."""
        if sys.unraisablehook != self._unraisable:
            self._next_unraisable_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return {sig: signal.signal(sig, self) for sig in HANDLED}

    def _unraisable(self, unraisable: Any) -> None:
        """The Interrupted this object raised was dropped in a finalizer: deliver the signal again."""
        dropped = self._raised
        if dropped is not None and unraisable.exc_value is dropped:
            log.debug("%s landed in %r and was dropped: raised again", dropped, unraisable.object)
            self._raised = None
            # Sent from here, the handler would run at once, inside this hook, and be dropped again; sent a moment
            # later from another thread, it runs in the main thread out of the finalizer (or lands here once more).
            timer = threading.Timer(0.01, os.kill, args=(os.getpid(), dropped.signum))
            timer.daemon = True
            timer.start()
            return
        (self._next_unraisable_hook or sys.__unraisablehook__)(unraisable)


def restore(previous: dict[int, object]) -> None:
    """Put back the handlers `SignalStop.install` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]


def installed() -> SignalStop | None:
    """This process's SignalStop, if one handles SIGTERM (the signal table is the one place it is kept)."""
    handler = signal.getsignal(signal.SIGTERM)
    return handler if isinstance(handler, SignalStop) else None
