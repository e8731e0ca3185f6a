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
