"""The bounded queues of live detection: a full queue drops (the oldest, or the new item) and
hands back what it dropped; it never blocks the producer; closing it ends the consumer; and
LiveConfig refuses bounds that cannot work."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest

from netflowgen.detect.live import BoundedQueue, LiveConfig


def test_a_full_queue_drops_the_oldest_and_says_what_it_dropped() -> None:
    q: BoundedQueue[int] = BoundedQueue(3, drop="oldest")
    dropped = [d for i in range(10) for d in q.put(i)]
    assert dropped == [0, 1, 2, 3, 4, 5, 6] and len(q) == 3 and q.held == 3
    q.close()
    assert [q.get(), q.get(), q.get(), q.get()] == [7, 8, 9, None]


def test_a_weighted_queue_drops_the_new_item_and_takes_an_oversized_one_only_when_empty() -> None:
    q: BoundedQueue[list[int]] = BoundedQueue(10, weight=len, drop="new")
    assert q.put([1] * 6) == [] and q.put([2] * 4) == []
    assert q.put([3]) == [[3]] and q.held == 10  # full: the new batch goes
    assert q.get() == [1] * 6 and q.held == 4
    assert q.put([4] * 7) == [[4] * 7]  # 4 + 7 > 10
    assert q.get() == [2] * 4 and q.held == 0
    assert q.put([5] * 25) == [] and q.held == 25  # an empty queue takes any item
    assert q.put([6]) == [[6]]


def test_get_waits_for_an_item_and_close_wakes_it() -> None:
    q: BoundedQueue[str] = BoundedQueue(1)
    got: list[str | None] = []
    consumer = threading.Thread(target=lambda: got.extend([q.get(), q.get()]))
    consumer.start()
    q.put("a")
    q.close()
    consumer.join(5)
    assert not consumer.is_alive() and got == ["a", None]
    with pytest.raises(ValueError, match="closed"):
        q.put("b")


def test_get_with_a_timeout_raises_empty_and_still_returns_an_item_put_later() -> None:
    q: BoundedQueue[str] = BoundedQueue(1)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    threading.Timer(0.05, q.put, ["a"]).start()
    assert q.get(timeout=5) == "a"
    q.close()
    assert q.get(timeout=0.01) is None  # closed and empty: None, not a timeout


def test_bad_bounds_are_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="capacity"):
        BoundedQueue(0)
    with pytest.raises(ValueError, match="drop must be"):
        BoundedQueue(1, drop="newest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="below idle_steps"):
        LiveConfig(Path("det"), idle_steps=4, queue_steps=4)
    with pytest.raises(ValueError, match="at least 1"):
        LiveConfig(Path("det"), queue_steps=0)
    with pytest.raises(ValueError):
        LiveConfig(Path("det"), filter="proto tcp and (")
    with pytest.raises(ValueError, match="clock_rate"):
        LiveConfig(Path("det"), clock_rate=-1)
