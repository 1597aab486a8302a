"""autograd.parallel: pieces cover the range once, errors come back, nesting runs inline."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from autograd import parallel


@pytest.fixture(autouse=True)
def _two_threads():
    before = parallel.get_num_threads()
    parallel.set_num_threads(2)
    yield
    parallel.set_num_threads(before)


def test_pieces_cover_the_range_exactly_once() -> None:
    hits = np.zeros(1001, dtype=np.int64)
    pieces = []

    def fn(lo: int, hi: int) -> None:
        pieces.append((lo, hi))
        hits[lo:hi] += 1

    parallel.parallel_for(fn, 1001, grain=10)
    assert (hits == 1).all()
    assert sorted(pieces) == [(0, 500), (500, 1001)]


def test_work_below_the_grain_runs_in_one_call_on_this_thread() -> None:
    calls = []
    parallel.parallel_for(lambda lo, hi: calls.append((lo, hi, threading.get_ident())), 7, 4)
    assert calls == [(0, 7, threading.get_ident())]
    parallel.parallel_for(lambda lo, hi: calls.append(1), 0)  # nothing to do: no call
    assert len(calls) == 1


def test_pieces_run_on_another_thread_too() -> None:
    idents = set()
    barrier = threading.Barrier(2, timeout=10)

    def fn(lo: int, hi: int) -> None:
        idents.add(threading.get_ident())
        barrier.wait()  # both pieces are running at the same time

    parallel.parallel_for(fn, 2)
    assert len(idents) == 2


def test_an_error_in_a_piece_is_raised_after_all_pieces_ran() -> None:
    done = []

    def fn(lo: int, hi: int) -> None:
        done.append(lo)
        if lo > 0:
            raise KeyError("second piece")

    with pytest.raises(KeyError, match="second piece"):
        parallel.parallel_for(fn, 10)
    assert sorted(done) == [0, 5]


def test_nested_calls_run_inline() -> None:
    out = np.zeros((4, 6))

    def inner_row(row: int) -> None:
        def fill(lo: int, hi: int) -> None:
            out[row, lo:hi] = row * 10 + np.arange(lo, hi)

        parallel.parallel_for(fill, 6)

    parallel.parallel_for(lambda lo, hi: [inner_row(r) for r in range(lo, hi)], 4)
    np.testing.assert_array_equal(out, np.arange(4)[:, None] * 10 + np.arange(6))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_wants_a_positive_int(bad) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="set_num_threads: expected a positive int"):
        parallel.set_num_threads(bad)


def test_one_thread_runs_everything_here() -> None:
    parallel.set_num_threads(1)
    idents = []
    parallel.parallel_for(lambda lo, hi: idents.append((lo, hi, threading.get_ident())), 100)
    assert idents == [(0, 100, threading.get_ident())]


def test_one_blas_thread_sets_one_thread_inside_and_restores_nested() -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    if not parallel.blas_threads_settable():
        pytest.skip("threadpoolctl finds no BLAS library")

    def counts() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    with threadpool_limits(2, user_api="blas"):
        assert counts() == [2] * len(counts()) and not parallel.blas_single_threaded()
        with parallel.one_blas_thread():
            assert counts() == [1] * len(counts()) and parallel.blas_single_threaded()
            with parallel.one_blas_thread():  # nested: still one, the outer one restores
                assert parallel.blas_single_threaded()
            assert parallel.blas_single_threaded()
        assert counts() == [2] * len(counts())
        with pytest.raises(KeyError), parallel.one_blas_thread():
            raise KeyError("restored on the way out too")
        assert counts() == [2] * len(counts())
