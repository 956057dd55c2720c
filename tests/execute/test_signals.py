import os
import signal

import pytest

from harness.execute.signals import RunInterrupted, SignalGuard


def test_sigterm_becomes_run_interrupted_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted) as info:
        with SignalGuard().installed():
            os.kill(os.getpid(), signal.SIGTERM)
    assert info.value.signum == signal.SIGTERM and info.value.exit_code == 143
    assert isinstance(info.value, KeyboardInterrupt)  # no plugin's "except Exception" eats it
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigint_exit_code_is_130() -> None:
    with pytest.raises(RunInterrupted) as info:
        with SignalGuard().installed():
            os.kill(os.getpid(), signal.SIGINT)
    assert info.value.exit_code == 130


def test_a_held_block_finishes_before_the_signal_is_raised() -> None:
    guard, steps = SignalGuard(), []
    with pytest.raises(RunInterrupted):
        with guard.installed():
            with guard.held():
                os.kill(os.getpid(), signal.SIGTERM)
                steps.append("record written")
            steps.append("never reached")
    assert steps == ["record written"]


def test_signals_after_the_first_cannot_cut_the_clean_up_short() -> None:
    guard, steps = SignalGuard(), []
    with pytest.raises(RunInterrupted) as info:
        with guard.installed():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("never reached")
            finally:  # stopping workers, writing the report: a second Ctrl-C is ignored
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                steps.append("cleaned up")
    assert info.value.signum == signal.SIGINT and guard.fired
    assert steps == ["cleaned up"]


def test_once_settled_a_signal_changes_nothing() -> None:
    guard, steps = SignalGuard(), []
    with guard.installed():
        steps.append("run finished")
        guard.settle()  # writing the manifest and report
        os.kill(os.getpid(), signal.SIGTERM)
        steps.append("report written")
    assert steps == ["run finished", "report written"]


def test_an_interruption_that_foreign_code_swallowed_is_raised_again() -> None:
    from harness.execute.signals import raise_if_interrupted

    guard = SignalGuard()
    raise_if_interrupted()  # no guard: nothing to raise
    with pytest.raises(RunInterrupted) as info:
        with guard.installed():
            raise_if_interrupted()  # nothing happened yet
            try:  # what a C extension running the handler may do with its exception
                os.kill(os.getpid(), signal.SIGTERM)
            except RunInterrupted:
                pass
            raise_if_interrupted()  # the driver's next turn: the run stops after all
    assert info.value.signum == signal.SIGTERM
    with guard.installed():
        guard.settle()
        raise_if_interrupted()  # once settled, the run is already stopping
