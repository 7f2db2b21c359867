"""The shared inference batcher: every caller gets its own scores, batches are shared and
bounded, a small request never waits behind more than the batch being computed."""

import threading
import time

import numpy as np
import pytest

from arcade_pacs.model.batcher import Batcher, _Request, plan_batch


def ids(n: int, start: float) -> np.ndarray:
    """Tensors whose first pixel identifies them, so a mixed-up answer is seen."""
    x = np.zeros((n, 2, 2, 3), dtype=np.float32)
    x[:, 0, 0, 0] = start + np.arange(n)
    return x


def first_pixel(batch: np.ndarray) -> np.ndarray:
    return batch[:, 0, 0, 0].copy()


def test_plan_gives_a_newcomer_room_in_the_next_batch_and_the_oldest_keeps_progressing():
    job, small = _Request(ids(144, 0)), _Request(ids(18, 1000))
    plan = plan_batch([job, small], 16)
    taken = {id(r): stop - start for r, start, stop in plan}
    assert sum(taken.values()) == 16
    assert taken[id(job)] == 8
    assert taken[id(small)] == 8
    only = plan_batch([job], 16)
    assert [(start, stop) for _r, start, stop in only] == [(0, 16)]


def test_concurrent_callers_get_their_own_scores_in_shared_batches():
    sizes = []

    def run(batch):
        sizes.append(len(batch))
        time.sleep(0.002)
        return first_pixel(batch)

    batcher = Batcher(run, max_batch=16)
    results, errors = {}, []

    def call(k, n):
        try:
            x = ids(n, 10_000 * k)
            results[k] = (batcher.predict(x), first_pixel(x))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(k, n)) for k, n in enumerate([144, 18, 18, 5, 1, 40, 18, 7])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(results) == 8
    for got, want in results.values():
        np.testing.assert_array_equal(got, want)
    assert max(sizes) <= 16
    assert sum(sizes) == 144 + 18 + 18 + 5 + 1 + 40 + 18 + 7
    assert len(sizes) < 144 + 18  # windows of several callers shared batches


def test_a_predict_request_waits_behind_at_most_the_running_batch():
    """A long job is being scored; a /predict-sized request arrives: its windows go into the
    very next batch, not after the job's remaining 128 windows."""
    first_started, release = threading.Event(), threading.Event()
    batches = []

    def run(batch):
        batches.append(first_pixel(batch))
        if len(batches) == 1:
            first_started.set()
            release.wait(10)
        return first_pixel(batch)

    batcher = Batcher(run, max_batch=16)
    job = threading.Thread(target=batcher.predict, args=(ids(144, 0),))
    job.start()
    assert first_started.wait(10)
    out = {}
    small = threading.Thread(target=lambda: out.setdefault("p", batcher.predict(ids(18, 5000))))
    small.start()
    time.sleep(0.05)  # the request is queued while batch 1 runs
    release.set()
    small.join(10)
    job.join(10)
    np.testing.assert_array_equal(out["p"], 5000 + np.arange(18))
    assert not np.any(batches[0] >= 5000)
    assert np.any(batches[1] >= 5000), "the request starts in the batch right after the running one"
    served = [i for i, b in enumerate(batches) if np.any(b >= 5000)]
    assert served[-1] <= 3  # done within 3 batches of arriving (18 windows, half of each batch)


def test_an_engine_error_fails_only_the_callers_in_that_batch_and_the_batcher_goes_on():
    calls = []

    def run(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("engine broke")
        return first_pixel(batch)

    batcher = Batcher(run, max_batch=16)
    with pytest.raises(RuntimeError, match="engine broke"):
        batcher.predict(ids(4, 0))
    np.testing.assert_array_equal(batcher.predict(ids(3, 7)), [7, 8, 9])


def test_the_thread_exits_when_idle_and_restarts_on_demand():
    batcher = Batcher(first_pixel, max_batch=4, idle_exit_s=0.05)
    batcher.predict(ids(5, 0))
    deadline = time.monotonic() + 5
    while batcher._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher._thread is None
    np.testing.assert_array_equal(batcher.predict(ids(2, 3)), [3, 4])
