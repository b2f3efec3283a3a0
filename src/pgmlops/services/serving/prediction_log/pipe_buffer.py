"""Encoded rows waiting for the logging process's pipe, kept as the requests wrote them.

The buffer was one bytearray with each write cut off its front. CPython copies a whole
bytearray that grows with bytes cut off its front, so with the log behind and the buffer
near its bound (200,000 rows, ~90 MB) every few requests copied it all: offering a row cost
the serving process 8.8-18.4 µs against 3.5-5.4 now, and one logging process's sustained
rate rose from 44,460 to 51,892 rows/s (medians of ten rounds each, same rounds:
``bench/log_rate.py --only writer``, bench/results/log-rate-wave3-writer.md). Here each
request's rows are one bytes object, never copied again, and a write gathers from the first
unsent byte across as many of them as one ``writev`` takes.
"""

from __future__ import annotations

import os
from collections import deque
from itertools import islice

_NEWLINE = ord("\n")
# At most this many requests' rows in one write (IOV_MAX is 1024 on Linux); single-row
# requests fill a 1 MiB pipe in a few writes of one call.
_GATHER = 512


class PipeBuffer:
    """Whole encoded rows, in order; ``write_to`` sends what a non-blocking pipe takes."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of the first chunk already written
        self.bytes = 0  # bytes not yet written

    def __bool__(self) -> bool:
        return self.bytes > 0

    def append(self, rows: bytes) -> None:
        """Queue one request's rows (whole lines, each ending in a newline)."""
        if rows:
            self._chunks.append(rows)
            self.bytes += len(rows)

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self.bytes = 0

    def write_to(self, fd: int) -> tuple[int, bool | None]:
        """Write until the pipe is full or the buffer empty: (whole rows written, whether
        the last write ended inside a row, or None if nothing was written).

        An OSError other than a full pipe propagates if it comes first; after a write that
        went, the rows so far are returned and the next call meets the error again.
        """
        rows = 0
        partial: bool | None = None
        while self._chunks:
            head = memoryview(self._chunks[0])[self._offset :]
            parts = [head, *islice(self._chunks, 1, _GATHER)]
            offered = sum(len(p) for p in parts)
            try:
                n = os.writev(fd, parts)
            except BlockingIOError:
                break
            except OSError:
                if partial is not None:
                    break
                raise
            finally:
                head.release()
            if n <= 0:
                break
            done, partial = self._advance(n)
            rows += done
            if n < offered:
                break  # the pipe took part of what was offered: it is full
        return rows, partial

    def drop_partial_row(self) -> None:
        """Skip the rest of a row whose beginning went to a pipe now gone."""
        if not self._chunks:
            return
        head = self._chunks[0]
        cut = head.find(b"\n", self._offset) + 1
        self.bytes -= cut - self._offset
        self._offset = cut
        if self._offset >= len(head):
            self._chunks.popleft()
            self._offset = 0

    def _advance(self, n: int) -> tuple[int, bool]:
        """Mark n bytes written: the whole rows among them, and whether the last is cut."""
        rows = 0
        last = _NEWLINE
        self.bytes -= n
        while n:
            head = self._chunks[0]
            take = min(n, len(head) - self._offset)
            rows += head.count(b"\n", self._offset, self._offset + take)
            last = head[self._offset + take - 1]
            self._offset += take
            n -= take
            if self._offset == len(head):
                self._chunks.popleft()
                self._offset = 0
        return rows, last != _NEWLINE
