"""Calls from several Python threads at once: same bits as one call at a time
(the GIL is released while kernels run, and every kernel is deterministic for
any thread count), and the backend context is per thread."""
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

import goldilocks
from conftest import randn


def test_concurrent_calls_give_the_sequential_bits(rng):
    problems = []
    for i in range(6):
        nq, nk = 20 + 7 * i, 30 + 11 * i
        mask = torch.rand(nq, nk, generator=rng) > 0.3
        problems.append((randn(rng, 2, 4, nq, 32), randn(rng, 2, 2, nk, 32), randn(rng, 2, 2, nk, 32), mask))

    def run(p):
        q, k, v, m = p
        return goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True)

    expected = [run(p) for p in problems]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            got = list(pool.map(run, problems * 2))
            for i, out in enumerate(got):
                assert torch.equal(out, expected[i % len(problems)]), f"problem {i % len(problems)} differs"


def test_backend_choice_is_per_thread(rng):
    q, k, v = randn(rng, 1, 2, 8, 16), randn(rng, 1, 2, 8, 16), randn(rng, 1, 2, 8, 16)
    inside, seen_elsewhere = threading.Event(), []

    def other_thread():
        inside.wait()
        seen_elsewhere.append((goldilocks.current_backend(), goldilocks.explain(q, k, v)["chosen"]))

    t = threading.Thread(target=other_thread)
    t.start()
    with goldilocks.sdpa_backend("reference"):
        assert goldilocks.explain(q, k, v)["chosen"] == "reference"
        inside.set()
        t.join()
    assert seen_elsewhere == [("auto", "flash")]
    assert goldilocks.current_backend() == "auto"


def test_thread_count_setting():
    assert goldilocks.get_num_threads() == goldilocks.available_cores()  # the default
    goldilocks.set_num_threads(1)
    assert goldilocks.get_num_threads() == 1
    goldilocks.set_num_threads(0)
    assert goldilocks.get_num_threads() == goldilocks.available_cores()


def test_gil_is_released_while_the_kernel_runs(rng):
    # If the call held the GIL, the main thread could run Python again only after the
    # kernel returned; with it released, it wakes while the (seconds-long) kernel still runs.
    q = randn(rng, 1, 4, 384, 64)
    finished = threading.Event()

    def worker():
        with goldilocks.sdpa_backend("reference"):  # slow on purpose
            goldilocks.scaled_dot_product_attention(q, q, q)
        finished.set()

    t = threading.Thread(target=worker)
    t.start()
    threading.Event().wait(0.01)
    still_running = not finished.is_set()
    t.join()
    assert still_running
