import threading
import time

from ace.tasks.threads import ordered_map


def test_ordered_map_keeps_order_and_runs_at_most_two_per_worker_ahead():
    started, lock = [], threading.Lock()

    def work(x):
        with lock:
            started.append(x)
        time.sleep(0.01 * (x % 3))  # out-of-order completion
        return x * x

    results = ordered_map(work, range(20), 2)
    assert next(results) == 0
    time.sleep(0.1)
    assert len(started) <= 5  # 4 queued ahead of the consumer, plus the one taken
    assert [0, *results] == [x * x for x in range(20)]
    assert list(ordered_map(work, range(5), 1)) == [0, 1, 4, 9, 16]
