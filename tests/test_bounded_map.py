"""tensorstore.bounded_map: a thread pool's map with results in order and a byte budget."""
from __future__ import annotations

import threading

import pytest

from modelhub.repo.tensorstore import bounded_map


class _Meter:
    """Counts the bytes of the calls running at once (each item is its own size)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def enter(self, size: int) -> None:
        with self.lock:
            self.running += size
            self.most = max(self.most, self.running)

    def leave(self, size: int) -> None:
        with self.lock:
            self.running -= size


@pytest.mark.parametrize("release_when_done", [False, True])
def test_results_come_in_order_and_the_running_calls_stay_within_the_budget(release_when_done):
    meter = _Meter()
    sizes = [(7 * i) % 23 + 1 for i in range(200)]
    gate = threading.Barrier(2, timeout=10)

    def fn(item: tuple[int, int]) -> int:
        index, size = item
        meter.enter(size)
        if index < 2:
            gate.wait()   # the first two calls run at once: the pool has two threads working
        meter.leave(size)
        return index

    out = list(bounded_map(fn, list(enumerate(sizes)), size=lambda item: item[1], budget=40, workers=2,
                           release_when_done=release_when_done))
    assert out == list(range(200))
    assert 0 < meter.most <= 40


def test_a_large_item_at_the_head_does_not_hold_the_budget_when_its_calls_release_when_done():
    # the head (100 of a budget of 120) finishes only after the twentieth small item has run; had
    # the head held its bytes until its result was taken, no more than two small items could ever
    # start and the head would wait out its timeout
    last_small_ran = threading.Event()

    def fn(item: tuple[str, int]) -> bool:
        name, _ = item
        if name == "head":
            return last_small_ran.wait(timeout=10)
        if name == "small19":
            last_small_ran.set()
        return True

    items = [("head", 100)] + [(f"small{i}", 10) for i in range(20)]
    out = list(bounded_map(fn, items, size=lambda item: item[1], budget=120, workers=2, release_when_done=True))
    assert out == [True] * 21


def test_the_first_failure_in_order_is_raised_and_the_items_after_it_are_not_all_run():
    ran: list[int] = []

    def fn(i: int) -> int:
        ran.append(i)
        if i == 5:
            raise ValueError("item 5 is damaged")
        return i

    got: list[int] = []
    with pytest.raises(ValueError, match="item 5 is damaged"):
        for r in bounded_map(fn, range(10_000), size=lambda i: 1, budget=4, workers=2, release_when_done=True):
            got.append(r)
    assert got == [0, 1, 2, 3, 4]
    assert len(ran) < 10_000   # queued calls are cancelled when the map stops


def test_an_item_larger_than_the_budget_still_runs_alone():
    meter = _Meter()

    def fn(size: int) -> int:
        meter.enter(size)
        meter.leave(size)
        return size

    sizes = [5, 500, 5, 5]
    assert list(bounded_map(fn, sizes, size=lambda s: s, budget=100, workers=2, release_when_done=True)) == sizes
    assert meter.most <= 500


def test_with_nothing_queued_no_item_waits_in_the_pool_beyond_those_being_worked_on():
    # a streaming commit's encode stage: an item taken from the input holds a tensor's mapped pages,
    # so no more are taken than the threads work on (plus the one being placed)
    lock = threading.Lock()
    taken = finished = 0
    most_ahead = 0

    def items():
        nonlocal taken, most_ahead
        for i in range(40):
            with lock:
                taken += 1
                most_ahead = max(most_ahead, taken - finished)
            yield i

    def fn(i: int) -> int:
        nonlocal finished
        threading.Event().wait(0.005)   # long enough for the map to take more if it would
        with lock:
            finished += 1
        return i

    out = list(bounded_map(fn, items(), size=lambda i: 1, budget=1 << 30, workers=2,
                           release_when_done=True, queued=0))
    assert out == list(range(40))
    assert most_ahead <= 3   # two being worked on, one taken and waiting for a thread


def test_small_items_are_batched_up_to_the_limit_and_a_large_one_goes_alone():
    from modelhub.repo.tensorstore import _batches

    sizes = [3, 3, 3, 20, 3, 10, 4, 0, 0]
    assert list(_batches(sizes, lambda s: s, 10)) == [([3, 3, 3], 9), ([20], 20), ([3], 3), ([10], 10), ([4, 0, 0], 4)]
    assert [len(b) for b, _ in _batches([0] * 600, lambda s: s, 10)] == [256, 256, 88]   # no bytes: a count bounds them


def test_the_items_of_a_batch_run_one_after_another_in_one_thread():
    # item 0 waits for item 1 to start: handed to the pool one by one, item 1 runs beside item 0 on
    # the other thread; batched (both in one batch of 10 bytes), it runs only after item 0 returns
    one_started = threading.Event()
    threads: dict[int, int] = {}

    def fn(i: int) -> bool:
        threads[i] = threading.get_ident()
        if i == 1:
            one_started.set()
        return one_started.wait(timeout=0.3) if i == 0 else True

    out = list(bounded_map(fn, range(20), size=lambda i: 1, workers=2, batch_bytes=10))
    assert out == [False] + [True] * 19
    assert len({threads[i] for i in range(10)}) == 1 and len({threads[i] for i in range(10, 20)}) == 1


def test_a_failure_in_a_batch_comes_after_the_results_before_it_and_the_rest_of_its_batch_is_not_run():
    ran: list[int] = []

    def fn(i: int) -> int:
        ran.append(i)
        if i == 13:
            raise ValueError("item 13 is damaged")
        return i

    got: list[int] = []
    with pytest.raises(ValueError, match="item 13 is damaged"):
        for r in bounded_map(fn, range(10_000), size=lambda i: 1, budget=40, workers=2, batch_bytes=10):
            got.append(r)
    assert got == list(range(13))
    assert not {14, 15, 16, 17, 18, 19} & set(ran)   # 13's batch (10-19) stopped at it
    assert len(ran) < 10_000


def test_a_failure_in_a_batch_is_raised_only_once_the_running_calls_are_done():
    # a streaming commit's caller cleans up (temp files, scratch buffers) when the error reaches it:
    # no call may still be running then. Item 13 fails once the batch of item 20 runs on the other
    # thread; item 20 takes a while to finish.
    started, finished = threading.Event(), threading.Event()

    def fn(i: int) -> int:
        if i == 20:
            started.set()
            threading.Event().wait(0.3)
            finished.set()
        if i == 13:
            started.wait(timeout=10)
            raise ValueError("item 13 is damaged")
        return i

    with pytest.raises(ValueError, match="item 13 is damaged"):
        list(bounded_map(fn, range(40), size=lambda i: 1, budget=40, workers=2, batch_bytes=10))
    assert started.is_set() and finished.is_set()
