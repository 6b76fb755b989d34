"""The pool's queue: jobs served round robin across clients, not first come first served.

With one FIFO queue, a client that queued twenty 3-second jobs made another client's `print(1)`
wait behind all of them (28.6 s). Here each client has its own queue and the sandboxes take one
job from each client with work in turn, so a small client waits for about one job per busy
sandbox, however much a large client has queued. Within a client, jobs keep their order.

Who a client is: its bearer token where the server checks one, else its address (`server.client_key`,
`http_api.HttpApp.client_key`). A stop marker (None) is handed out only when no job is left, so
a draining close still runs every queued job first.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._jobs: dict[str, deque[T]] = {}
        self._turns: deque[str] = deque()   # clients with queued jobs, in the order they are served
        self._stops = 0
        self._size = 0
        self._cond = threading.Condition()

    def put(self, item: T | None, client: str = "") -> None:
        with self._cond:
            if item is None:
                self._stops += 1
            else:
                jobs = self._jobs.get(client)
                if jobs is None:
                    jobs = self._jobs[client] = deque()
                    self._turns.append(client)
                jobs.append(item)
                self._size += 1
            self._cond.notify()

    def get(self, timeout: float | None = None) -> T | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._size and not self._stops:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise queue.Empty
                self._cond.wait(left)
            return self._take()

    def get_nowait(self) -> T | None:
        with self._cond:
            if not self._size and not self._stops:
                raise queue.Empty
            return self._take()

    def _take(self) -> T | None:
        if not self._size:
            self._stops -= 1
            return None
        client = self._turns.popleft()
        jobs = self._jobs[client]
        item = jobs.popleft()
        self._size -= 1
        if jobs:
            self._turns.append(client)   # its next job waits for every other client's turn
        else:
            del self._jobs[client]
        return item

    def qsize(self) -> int:
        with self._cond:
            return self._size
