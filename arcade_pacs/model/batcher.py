"""One inference thread per model: concurrent callers' windows are packed into shared batches.

Worker jobs (144 passes for 8 keyframes) and ``/predict`` requests (18 passes for one picture)
call :meth:`Batcher.predict` from their own threads. One thread runs the engine; each batch of
at most ``max_batch`` windows is filled from every waiting request:

- the oldest request gets up to half of the batch when others wait (it always progresses);
- the rest goes to the other requests, fewest remaining windows first, so a ``/predict``
  request that arrives while a long job runs starts in the very next batch: it never waits
  behind more than the one batch being computed;
- whatever room is left goes back to the oldest request.

A caller blocks until all its windows are scored and gets them in its own order. An engine
error fails only the requests that had windows in that batch. The thread exits when idle and
starts again on the next request, so a swapped-out model's batcher leaves nothing running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from arcade_pacs.core import metrics

IDLE_EXIT_S = 30.0


class _Request:
    __slots__ = ("tensors", "out", "taken", "scored", "done", "error")

    def __init__(self, tensors: np.ndarray):
        self.tensors = tensors
        self.out = np.zeros(len(tensors), dtype=np.float32)
        self.taken = 0  # windows handed to batches
        self.scored = 0  # windows whose scores came back
        self.done = threading.Event()
        self.error: BaseException | None = None

    @property
    def remaining(self) -> int:
        return len(self.tensors) - self.taken


def plan_batch(pending: list[_Request], max_batch: int) -> list[tuple[_Request, int, int]]:
    """Slices ``(request, start, stop)`` of the next batch (see the module docstring)."""
    waiting = [r for r in pending if r.remaining > 0]
    if not waiting:
        return []
    head, others = waiting[0], waiting[1:]
    take: dict[int, int] = {}
    room = max_batch
    if others:
        take[0] = min(head.remaining, max(1, max_batch // 2))
        room -= take[0]
    for i, r in sorted(enumerate(others, start=1), key=lambda ir: ir[1].remaining):
        if room <= 0:
            break
        take[i] = min(r.remaining, room)
        room -= take[i]
    if room > 0:
        take[0] = min(head.remaining, take.get(0, 0) + room)
    plan = []
    for i, n in sorted(take.items()):
        r = waiting[i]
        if n > 0:
            plan.append((r, r.taken, r.taken + n))
    return plan


class Batcher:
    """Packs concurrent :meth:`predict` calls into batches of at most ``max_batch`` for ``run``."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int = 16, idle_exit_s: float = IDLE_EXIT_S):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.run = run
        self.max_batch = max_batch
        self.idle_exit_s = idle_exit_s
        self._pending: list[_Request] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.batches = 0  # batches run (for tests and the bench)

    def predict(self, tensors: np.ndarray) -> np.ndarray:
        """Probabilities ``(N,)`` for ``tensors`` ``(N, ...)``, scored in shared batches."""
        tensors = np.asarray(tensors, dtype=np.float32)
        if len(tensors) == 0:
            return np.zeros(0, dtype=np.float32)
        request = _Request(tensors)
        with self._cond:
            self._pending.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="inference", daemon=True)
                self._thread.start()
            self._cond.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.out

    def _loop(self) -> None:
        while True:
            with self._cond:
                plan = plan_batch(self._pending, self.max_batch)
                if not plan:
                    self._cond.wait(self.idle_exit_s)
                    plan = plan_batch(self._pending, self.max_batch)
                    if not plan:
                        self._thread = None
                        return
                for r, _start, stop in plan:
                    r.taken = stop
                self._pending = [r for r in self._pending if r.remaining > 0 or r.scored < r.taken]
            self._execute(plan)

    def _execute(self, plan: list[tuple[_Request, int, int]]) -> None:
        if len(plan) == 1:
            r, start, stop = plan[0]
            batch = r.tensors[start:stop]
        else:
            batch = np.concatenate([r.tensors[start:stop] for r, start, stop in plan], axis=0)
        try:
            scores = np.asarray(self.run(batch), dtype=np.float32).reshape(-1)
            if len(scores) != len(batch):
                raise RuntimeError(f"engine returned {len(scores)} scores for {len(batch)} windows")
        except BaseException as exc:  # noqa: BLE001 - handed to the callers whose windows failed
            with self._cond:
                for r, _start, _stop in plan:
                    r.error = exc
                    r.taken = len(r.tensors)
                    r.scored = r.taken
                    r.done.set()
                self._pending = [r for r in self._pending if not r.done.is_set()]
            return
        self.batches += 1
        metrics.INFERENCE_PASSES.inc()
        metrics.INFERENCE_IMAGES.inc(len(batch))
        offset = 0
        with self._cond:
            for r, start, stop in plan:
                n = stop - start
                r.out[start:stop] = scores[offset : offset + n]
                offset += n
                r.scored += n
                if r.scored == len(r.tensors) and r.error is None:
                    r.done.set()
            self._pending = [r for r in self._pending if not r.done.is_set()]
