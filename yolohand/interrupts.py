"""Ctrl-C, the same for every command from its first instruction: ``interrupted``, exit 130.

Three phases, one SIGINT handler each (installed only over Python's own default handler, in the
main thread, so a program that set its own keeps it):

* **Imports** (:func:`defer`, installed by the first lines of ``yolohand/__init__.py`` when the
  process is the ``yolohand`` command, and of ``yolohand/cli/__init__.py``): a Ctrl-C is noted, not
  raised, so no half-done import prints a ``KeyboardInterrupt`` traceback; the command's boundary
  (:func:`yolohand.cli.main`) then ends with ``interrupted`` before any work.
* **The command** (:func:`arm`, inside the boundary): a Ctrl-C raises ``KeyboardInterrupt`` as usual
  and is noted too. Where a library swallows it (raised inside a weakref callback or ``__del__``:
  ``Exception ignored in: ... KeyboardInterrupt``, and training ran on), the note stays: the
  training loops call :func:`check` after each batch, and the boundary turns a noted Ctrl-C into
  exit 130. Such swallowed interrupts print nothing (:func:`_unraisable`).
* **After the boundary** (:func:`settle`): the command's program ignores SIGINT to its end, so a
  late Ctrl-C can neither print a traceback from the interpreter's shutdown nor kill a finished
  command by the signal; a caller that is not the
  ``yolohand`` program (a test, a notebook) gets its own handler back.

Imports nothing heavy (signal, sys, os, threading).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

__all__ = ["defer", "arm", "settle", "check", "seen", "clear", "is_command", "early"]

_state = {"seen": False, "original": None, "hook": None}


def _noted(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    _state["seen"] = True


def _raised(signum, frame) -> None:  # noqa: ARG001
    _state["seen"] = True
    raise KeyboardInterrupt


def _install(handler) -> bool:
    """Put ``handler`` on SIGINT when the current one is Python's default or ours; unblock SIGINT
    (a Ctrl-C that arrived while a parent had it blocked is delivered now, to ``handler``)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGINT)
    if current not in (signal.default_int_handler, _noted, _raised):
        return False
    if _state["original"] is None:
        _state["original"] = current
    signal.signal(signal.SIGINT, handler)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    return True


def is_command() -> bool:
    """True when this process is the ``yolohand`` command: the console script, ``python -m yolohand``
    (``-m`` while the package is imported) or the repository's ``cli.py``."""
    first = sys.argv[0] if sys.argv else ""
    name = os.path.basename(first).removesuffix(".exe")
    here = os.path.dirname(os.path.realpath(__file__))  # the package; another program's cli.py is not ours
    return first == "-m" or name == "yolohand" or (
        name in ("cli.py", "__main__.py") and os.path.realpath(first) in (os.path.join(os.path.dirname(here), "cli.py"),
                                                                        os.path.join(here, "__main__.py")))


def early() -> None:
    """:func:`defer` when this process is the ``yolohand`` command (the first lines of the package)."""
    if is_command():
        defer()


def defer() -> None:
    """From now on a Ctrl-C is only noted (the import phase; after the command's boundary)."""
    _install(_noted)


def arm() -> None:
    """From now on a Ctrl-C raises KeyboardInterrupt (and is noted); one noted before raises now.

    Also silences the ``Exception ignored ... KeyboardInterrupt`` report of an interrupt raised where
    Python cannot propagate it: it stays noted, and :func:`check` raises it at the next safe point."""
    if _state["hook"] is None:
        _state["hook"] = sys.unraisablehook
        sys.unraisablehook = _unraisable
    _install(_raised)
    check()


def settle(program: bool) -> None:
    """Leave the command's boundary: the program's own run (``program``) ignores late Ctrl-Cs until it
    exits (its outcome is decided); an in-process caller gets the SIGINT handler and unraisable hook it had before."""
    if program:
        # Ignored, not noted: Python's shutdown puts a noted handler back to SIG_DFL, and a Ctrl-C in
        # that last moment killed the finished command by the signal (status -2) instead of exit 0;
        # an ignored signal stays ignored to the end (_PySignal_Fini leaves SIG_IGN alone).
        _install(signal.SIG_IGN)
        return
    if _state["hook"] is not None:
        sys.unraisablehook, _state["hook"] = _state["hook"], None
    if _state["original"] is not None and signal.getsignal(signal.SIGINT) in (_noted, _raised) and \
            threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _state["original"])
    clear()


def _unraisable(unraisable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _state["seen"] = True
        return
    (_state["hook"] or sys.__unraisablehook__)(unraisable)


def seen() -> bool:
    """True when a Ctrl-C arrived since the command started (raised, swallowed by a library, or noted)."""
    return bool(_state["seen"])


def check() -> None:
    """Raise KeyboardInterrupt when a Ctrl-C arrived: a safe point (after a training batch, before an
    output is put in place) where one that a library swallowed still stops the command."""
    if _state["seen"]:
        raise KeyboardInterrupt


def clear() -> None:
    """Forget a noted Ctrl-C (a new command starts)."""
    _state["seen"] = False
