"""Ctrl-C (SIGINT) and SIGTERM for long commands: stop cleanly, keep the work done, never store a half item.

`cli.run_script` calls `install()`: both signals then raise `Interrupted` (a KeyboardInterrupt) in the main
thread, so the scripts' `except KeyboardInterrupt` paths (write what is finished, release locks, close the
feature store unfinished) run for SIGTERM too, and the exit code says which signal stopped the run
(130 for SIGINT, 143 for SIGTERM, the shell's 128 + signal number).

openSMILE calls back into Python from C (ctypes) for every output frame; an exception raised inside such a
callback is printed and swallowed by ctypes, so a Ctrl-C during feature extraction used to cut the
utterance's frames short (124 instead of 125) and let the run go on. `deferred()` holds the signals during
such a call and raises `Interrupted` when it returns: the caller never receives the truncated result.
"""
import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM; `exit_code` is 128 + the signal number."""

    def __init__(self, signum=signal.SIGINT):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def exit_code(self):
        return 128 + self.signum


def exit_code(exc):
    """Exit code of an interrupted run: 128 + signal number (a plain KeyboardInterrupt counts as SIGINT)."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def _raise(signum, frame):
    raise Interrupted(signum)


def _main_thread():
    return threading.current_thread() is threading.main_thread()


def install():
    """SIGINT and SIGTERM raise `Interrupted` in the main thread (no-op outside the main thread); -> the
    previous handlers, for `restore`."""
    if not _main_thread():
        return {}
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _raise)
    return old


def restore(old):
    """Put back the handlers `install` replaced."""
    if _main_thread():
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextmanager
def deferred():
    """Hold SIGINT/SIGTERM during the block and raise `Interrupted` when it ends (even when it ends
    normally, so its result is never used). Signals whose handler is not a Python function (ignored, or the
    default action, e.g. in a worker process) are left alone; outside the main thread this does nothing."""
    if not _main_thread():
        yield
        return
    got, old = [], {}

    def hold(signum, frame):
        got.append(signum)

    for s in SIGNALS:
        h = signal.getsignal(s)
        if callable(h):
            old[s] = h
            signal.signal(s, hold)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            raise Interrupted(got[0])


def ignore_in_worker():
    """For worker processes (pool initialisers): Ctrl-C goes to the whole process group, and the main process
    decides; SIGTERM (how a pool stops its workers) keeps its default action."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
