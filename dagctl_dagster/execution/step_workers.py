"""The run's step threads, reused from one model step to the next.

``sqlmesh run`` evaluates models on a few long-lived worker threads; so does a run here.
A thread keeps what the frameworks opened for it (a warehouse connection, a cursor) for
the next step, instead of opening and closing one per model, and starting a step is a
queue put instead of a new thread. When the run ends, each thread tells the frameworks
it is ending (:meth:`RunFramework.thread_ending`) on itself, so connections are closed by
the thread that opened them.

Example::

    workers = StepWorkers(on_thread_end=lambda: None)
    workers.start("model_a", run_model_a, finished=lambda: print("a done"))
    workers.wait(15.0)   # True when no step is running any more
    workers.close(5.0)
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_names = itertools.count(1)


@dataclass(frozen=True)
class _Job:
    step_key: str
    body: Callable[[], None]
    finished: Callable[[], None]
    done: threading.Event


class StepWorkers:
    """Daemon threads that run step bodies one at a time each; as many as ran at once."""

    def __init__(self, on_thread_end: Callable[[], None]):
        self._on_thread_end = on_thread_end
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[_Job | None]] = []
        self._threads: list[tuple[threading.Thread, queue.SimpleQueue[_Job | None]]] = []
        self._running: dict[str, threading.Event] = {}

    def start(self, step_key: str, body: Callable[[], None], finished: Callable[[], None]) -> None:
        """Runs ``body`` on an idle thread (a new one if none is idle), then ``finished``.

        ``finished`` runs after the thread is idle again, so a step started from it reuses
        this thread.
        """
        job = _Job(step_key, body, finished, threading.Event())
        with self._lock:
            self._running[step_key] = job.done
            jobs = self._idle.pop() if self._idle else None
        if jobs is None:
            jobs = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._work, args=(jobs,), name=f"dagctl-step-worker-{next(_names)}", daemon=True
            )
            with self._lock:
                self._threads.append((thread, jobs))
            thread.start()
        jobs.put(job)

    @property
    def running(self) -> list[str]:
        """Step keys whose body has not returned yet."""
        with self._lock:
            return list(self._running)

    def wait(self, seconds: float) -> bool:
        """Waits (bounded) until no step body runs; True when none is left."""
        deadline = time.monotonic() + seconds
        with self._lock:
            pending = list(self._running.values())
        for done in pending:
            done.wait(max(0.0, deadline - time.monotonic()))
        return not self.running

    def close(self, seconds: float) -> None:
        """Ends every thread once its step is over, waiting at most ``seconds`` in all."""
        with self._lock:
            threads, self._threads, self._idle = self._threads, [], []
        for _, jobs in threads:
            jobs.put(None)
        deadline = time.monotonic() + seconds
        for thread, _ in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        try:
            while (job := jobs.get()) is not None:
                try:
                    job.body()
                except Exception:
                    # The thread goes back to the idle list below: it must live on to serve it.
                    logger.exception("step %s raised out of its body", job.step_key)
                finally:
                    with self._lock:
                        self._idle.append(jobs)
                        if self._running.get(job.step_key) is job.done:
                            del self._running[job.step_key]
                    job.done.set()
                    job.finished()
        finally:
            try:
                self._on_thread_end()
            except Exception:  # the frameworks' cleanup must not leave the run hanging
                logger.warning("ending a step thread failed", exc_info=True)
