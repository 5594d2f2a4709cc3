"""Decoding in its own thread: a source's frames are produced ahead into a small bounded queue, so
decoding (and the motion test, which runs with it) overlaps with inference instead of adding to it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from alprd.geometry import Frame
from alprd.sources.sources import Source, put_unless_stopped

_END = object()


class ThreadedFrames:
    """Iterate a source's frames, decoded by a thread `depth` frames ahead. `decode_ms` holds the
    time each frame took to produce (decode + motion test), for the bench's figures."""

    def __init__(self, source: Source, depth: int = 8):
        self.source = source
        self.stop = threading.Event()
        self.decode_ms: list[float] = []
        self.decode_cpu_ms: list[float] = []  # CPU time of this thread per frame: what decoding costs without the wait
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"decode-{source.cam.id}", daemon=True)

    def _run(self) -> None:
        try:
            it = self.source.frames(self.stop)
            while not self.stop.is_set():
                t0, c0 = time.perf_counter(), time.thread_time()
                frame = next(it, None)
                if frame is None:
                    break
                self.decode_ms.append((time.perf_counter() - t0) * 1000)
                self.decode_cpu_ms.append((time.thread_time() - c0) * 1000)
                put_unless_stopped(self._q, frame, self.stop)
        except BaseException as e:  # handed to the consumer, not lost in a thread
            self._error = e
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while True:
            try:
                self._q.put(_END, timeout=0.2)
                return
            except queue.Full:
                if self.stop.is_set():
                    return

    def __iter__(self) -> Iterator[Frame]:
        self._thread.start()
        try:
            while True:
                item = self._q.get()
                if item is _END:
                    break
                yield item
        finally:
            self.close()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self.stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        if self._thread.is_alive():
            self._thread.join(5)
