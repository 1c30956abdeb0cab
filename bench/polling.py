"""3. Status polling: simulated browsers poll the status partial the way htmx does.

Each browser starts at a random offset within one period, then requests the partial
(``HX-Request: true``) every period on a fixed schedule, without keep-alive.
"""

from __future__ import annotations

import random
import threading
import time

from bench.client import HTMX, fetch
from bench.stats import latency_summary, median
from bench.system import total_cpu_seconds

PATH = "/settings/schedule/status"


def measure_polling(server, pids: list[int], browsers: int = 50, period: float = 2.0, seconds: float = 60.0) -> dict:
    """Latency, errors, size and server CPU for ``browsers`` polling for ``seconds``."""
    polls = int(seconds / period)
    answers: list = []
    lock = threading.Lock()
    rng = random.Random(7)
    offsets = [rng.uniform(0, period) for _ in range(browsers)]
    begin = time.monotonic() + 0.5

    def browser(offset: float) -> None:
        mine = []
        for poll in range(polls):
            time.sleep(max(0.0, begin + offset + poll * period - time.monotonic()))
            mine.append(fetch(server.port, PATH, HTMX))
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=browser, args=(offset,), daemon=True) for offset in offsets]
    cpu_before, wall_before = total_cpu_seconds(pids), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    cpu_used, wall = total_cpu_seconds(pids) - cpu_before, time.monotonic() - wall_before
    ok = [answer for answer in answers if answer.ok]
    sizes = [len(answer.body) for answer in ok]
    wire = [len(answer.body) + answer.header_bytes for answer in ok]
    return {
        "browsers": browsers,
        "period_seconds": period,
        "duration_seconds": round(wall, 1),
        "requests": len(answers),
        "expected_requests": browsers * polls,
        "errors": len(answers) - len(ok) + (browsers * polls - len(answers)),
        "error_kinds": sorted({answer.error for answer in answers if answer.error}),
        "latency": latency_summary([answer.seconds for answer in ok]),
        "body_bytes": {"median": median(sizes), "max": max(sizes) if sizes else None},
        "wire_bytes": {"median": median(wire), "max": max(wire) if wire else None},
        "server_cpu_seconds": round(cpu_used, 2),
        "server_cpu_percent_of_core": round(100 * cpu_used / wall, 1),
    }
