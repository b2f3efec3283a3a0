"""The serving side's buffer of encoded rows: in order, whole rows counted, nothing copied."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

import pytest

from pgmlops.services.serving.prediction_log.pipe_buffer import PipeBuffer


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(w, False)
    os.set_blocking(r, False)
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)  # one page: small enough to fill
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


def _drain(r: int) -> bytes:
    got = b""
    while True:
        try:
            chunk = os.read(r, 1 << 16)
        except BlockingIOError:
            return got
        if not chunk:
            return got
        got += chunk


def _request(first: int, rows: int) -> bytes:
    return b"".join(b'{"row":%d,"pad":"%s"}\n' % (i, b"x" * 40) for i in range(first, first + rows))


def test_a_full_pipe_takes_part_and_the_rest_follows_in_order(pipe: tuple[int, int]) -> None:
    r, w = pipe
    buffer = PipeBuffer()
    sent = [_request(0, 100), _request(100, 1), _request(101, 250)]
    for rows in sent:
        buffer.append(rows)
    received, counted = b"", 0
    while buffer:
        rows, _ = buffer.write_to(w)
        counted += rows
        received += _drain(r)
    assert received == b"".join(sent)
    assert counted == 351
    assert buffer.bytes == 0


def test_many_single_row_requests_go_out_together(pipe: tuple[int, int]) -> None:
    r, w = pipe
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
    buffer = PipeBuffer()
    for i in range(2000):
        buffer.append(_request(i, 1))
    rows, partial = buffer.write_to(w)
    assert (rows, partial) == (2000, False)
    assert _drain(r) == b"".join(_request(i, 1) for i in range(2000))


def test_a_write_ending_inside_a_row_says_so_and_the_rest_of_that_row_can_be_dropped(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    buffer = PipeBuffer()
    sent = _request(0, 200)
    buffer.append(sent)
    rows, partial = buffer.write_to(w)
    got = _drain(r)
    assert partial is True and not got.endswith(b"\n")
    assert rows == got.count(b"\n")
    buffer.drop_partial_row()
    rest = b""
    while buffer:
        buffer.write_to(w)
        rest += _drain(r)
    end_of_cut_row = sent.find(b"\n", len(got)) + 1
    assert rest == sent[end_of_cut_row:]  # the cut row's tail is gone, every later row whole


def test_nothing_written_to_a_full_pipe_is_reported_as_none(pipe: tuple[int, int]) -> None:
    _, w = pipe
    buffer = PipeBuffer()
    buffer.append(_request(0, 200))
    buffer.write_to(w)  # fills the page
    assert buffer.write_to(w) == (0, None)


def test_a_pipe_whose_reader_is_gone_raises_before_anything_is_written(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    os.close(r)
    buffer = PipeBuffer()
    buffer.append(_request(0, 3))
    with pytest.raises(BrokenPipeError):
        buffer.write_to(w)
    assert buffer.bytes == len(_request(0, 3))
