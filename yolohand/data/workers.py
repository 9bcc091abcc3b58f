"""Process pools for the CPU-bound steps (``synth``, ``convert``), safe to start from a script,
a notebook or a test run that has already used OpenCV or torch.

Two hazards, measured here:

- Forking while OpenCV's thread pool is alive leaves the child with a pool whose threads do not
  exist: ``cv2.setNumThreads`` in the child then waits forever. :func:`cv2_single_threaded`
  shuts the parent's pool down (one thread) for the life of the workers and restores it after.
- Once torch is loaded its OpenMP pool makes fork deadlock-prone too; then :func:`pool_context`
  uses forkserver, which re-imports the caller's main module: a script needs the usual
  ``if __name__ == "__main__":`` guard there (a notebook does not). Without torch, fork: cheap,
  and no guard needed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.pool
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import cv2


def pool_context() -> mp.context.BaseContext:
    """fork where available and torch is not loaded; else forkserver (or spawn)."""
    methods = mp.get_all_start_methods()
    if "fork" in methods and "torch" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


@contextmanager
def cv2_single_threaded() -> Iterator[None]:
    """OpenCV on one thread inside the block (workers are forked from a pool-free parent)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def init_worker(parent: int | None = None) -> None:
    """Pool initializer: one OpenCV thread per worker process (the pool already uses every core).

    Workers ignore SIGINT: a Ctrl-C reaches the whole process group, and the parent alone
    handles it (it terminates the pool and removes its temporary output), so no worker prints a
    ``KeyboardInterrupt`` traceback. And a worker never outlives the command: see :func:`die_with_parent`.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by start_pool until now
    die_with_parent(parent)
    cv2.setNumThreads(1)


def die_with_parent(parent: int | None) -> None:
    """Linux: SIGTERM to this process when the process that started it ends, however it ends (even
    killed): a pool worker ignores SIGINT and waits on a queue whose other end it holds itself, so a
    worker whose command died without terminating the pool would sleep forever, re-parented to init.
    ``parent``: the command's pid; a worker that starts after it has gone exits at once."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if parent is not None:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except OSError:
            pass


def start_pool(workers: int) -> mp.pool.Pool:
    """A process pool of ``workers`` (:func:`pool_context`, :func:`init_worker`).

    SIGINT is blocked while the workers are forked, so a Ctrl-C that lands between a fork and the
    worker's initializer cannot make that worker print a traceback; the parent receives it as
    soon as the pool exists, and then terminates the pool before it raises (the caller never got it).
    Use it as a context manager: leaving the block terminates the pool.
    """
    blocked = hasattr(signal, "pthread_sigmask")
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if blocked else None
    try:
        pool = pool_context().Pool(workers, initializer=init_worker, initargs=(os.getpid(),))
    except BaseException:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    try:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a pending Ctrl-C raises here
    except BaseException:
        pool.terminate()
        raise
    return pool


__all__ = [
    "pool_context", "cv2_single_threaded", "init_worker", "die_with_parent", "start_pool",
]
