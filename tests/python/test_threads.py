"""Calls from several Python threads at once: same bits as one call at a time
(the GIL is released while kernels run, and every kernel is deterministic for
any thread count), and the backend context is per thread."""
import threading
import time
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
    assert seen_elsewhere == [("auto", "decode")]  # 8 query rows: the split-KV decode backend
    assert goldilocks.current_backend() == "auto"


def test_thread_count_setting():
    assert goldilocks.get_num_threads() == goldilocks.available_cores()  # the default
    goldilocks.set_num_threads(1)
    assert goldilocks.get_num_threads() == 1
    goldilocks.set_num_threads(0)
    assert goldilocks.get_num_threads() == goldilocks.available_cores()


def test_gil_is_released_while_the_kernel_runs(rng):
    # With the GIL held, the main thread could run Python again only after the kernel
    # returned (>= its full duration); released, it wakes 10 ms after starting it.
    # The margin is 50x, so machine noise cannot flip the outcome.
    q = randn(rng, 1, 4, 768, 64)  # about half a second on the reference backend

    def kernel():
        with goldilocks.sdpa_backend("reference"):  # slow on purpose
            goldilocks.scaled_dot_product_attention(q, q, q)

    t0 = time.perf_counter()
    kernel()
    duration = time.perf_counter() - t0
    worker = threading.Thread(target=kernel)
    start = time.perf_counter()
    worker.start()
    threading.Event().wait(0.01)
    woke_after = time.perf_counter() - start
    worker.join()
    assert woke_after < duration / 2, f"main thread blocked {woke_after:.3f} s by a {duration:.3f} s call"


def test_one_openmp_runtime_shared_with_torch():
    # Goldilocks and PyTorch must share one OpenMP thread pool (libgomp.so.1, whichever
    # loaded first): two pools would put twice the cores' threads on the machine.
    maps = open("/proc/self/maps").read().splitlines()
    runtimes = {line.split()[-1] for line in maps if "libgomp" in line or "libiomp" in line}
    assert len(runtimes) == 1, runtimes


def test_concurrent_flex_calls_give_the_sequential_bits(rng):
    specs = ["causal", "causal+window:9+sinks:2", "causal+alibi", "softcap:2"]
    q, k, v = randn(rng, 2, 4, 45, 16), randn(rng, 2, 2, 45, 16), randn(rng, 2, 2, 45, 16)
    bm = goldilocks.create_block_mask("causal+window:9+sinks:2", 2, 4, 45, 45, BLOCK_SIZE=16)

    def run(i):
        if i == len(specs):
            return goldilocks.flex_attention(q, k, v, block_mask=bm, enable_gqa=True)  # one block mask, many threads
        return goldilocks.flex_attention(q, k, v, specs[i], enable_gqa=True)

    expected = [run(i) for i in range(len(specs) + 1)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(run, list(range(len(specs) + 1)) * 4))
    for i, out in enumerate(got):
        assert torch.equal(out, expected[i % len(expected)]), f"call {i}"


def test_kv_cache_shared_by_reader_and_writer_threads(rng):
    # Readers attend (GIL released) while a writer appends and rolls back the same
    # cache: every read sees the cache before or after a mutation, never halfway.
    cache = goldilocks.KvCache(2, 2, 32, 64, layout="paged", page_size=4, storage="int8")
    cache.append(randn(rng, 2, 2, 30, 32), randn(rng, 2, 2, 30, 32))
    k_extra, v_extra = randn(rng, 2, 2, 3, 32), randn(rng, 2, 2, 3, 32)
    q = randn(rng, 2, 4, 1, 32)
    short = cache.attend(q)
    cache.append(k_extra, v_extra)
    long = cache.attend(q)
    cache.rollback(0, 30)
    cache.rollback(1, 30)
    stop, failures = threading.Event(), []

    def writer():
        for _ in range(150):
            cache.append(k_extra, v_extra)
            cache.rollback(0, 30)
            cache.rollback(1, 30)
        stop.set()

    def reader():
        while not stop.is_set():
            out = cache.attend(q)
            # Between the writer's two rollbacks one sequence is short and the other long.
            for b in range(2):
                if not (torch.equal(out[b], short[b]) or torch.equal(out[b], long[b])):
                    failures.append(b)

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert cache.lengths == [30, 30] and torch.equal(cache.attend(q), short)
