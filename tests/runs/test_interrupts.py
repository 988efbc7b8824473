"""The SIGINT/SIGTERM handler: a job stops at the first signal and its cleanup is not cut short by the next one;
outside a job a sweep process records the signal and goes on; the exit code follows the shell's convention."""

from __future__ import annotations

import os
import signal
import time

import pytest

from experiments.runs.interrupts import Interrupted, SignalStop, installed, restore


def deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode


@pytest.fixture
def handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    restore(saved)


def test_a_job_stops_at_the_first_signal_and_its_cleanup_survives_the_next(handlers):
    stop = SignalStop(raise_outside_jobs=False)
    stop.install()
    assert installed() is stop
    cleaned_up = False
    with pytest.raises(Interrupted) as info, stop.job():
        try:
            deliver(signal.SIGTERM)
        finally:
            deliver(signal.SIGINT)  # a second Ctrl-C while the run closes: ignored
            cleaned_up = True
    assert cleaned_up and info.value.signum == signal.SIGTERM and info.value.exit_code == 143
    assert isinstance(info.value, KeyboardInterrupt)  # whatever handles Ctrl-C handles it
    with pytest.raises(Interrupted) as again, stop.job():  # the next job stops at its own first signal
        deliver(signal.SIGINT)
    assert again.value.exit_code == 130


def test_an_interrupt_that_lands_in_a_finalizer_is_raised_again(handlers):
    """Python runs the handler wherever the main thread is, and drops an exception raised in a finalizer (here a
    __del__; in a real job, SQLAlchemy's weakref callbacks): the job must stop all the same."""

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10000):  # the handler runs here, inside the finalizer
                pass

    stop = SignalStop(raise_outside_jobs=False)
    stop.install()
    with pytest.raises(Interrupted), stop.job():
        Finalized()  # dropped at once: its __del__ runs
        time.sleep(0.1)


def test_a_sweep_process_records_a_signal_between_jobs_and_goes_on(handlers):
    seen = []
    stop = SignalStop(raise_outside_jobs=False, on_first_signal=seen.append)
    stop.install()
    deliver(signal.SIGTERM)  # an idle joblib worker, or the sweep's parent waiting for its jobs: no exception
    deliver(signal.SIGTERM)
    assert stop.signum == signal.SIGTERM and seen == [signal.SIGTERM]  # on_first_signal ran once


def test_a_single_run_stops_on_a_signal_anywhere(handlers):
    SignalStop(raise_outside_jobs=True).install()
    with pytest.raises(Interrupted):
        deliver(signal.SIGTERM)
