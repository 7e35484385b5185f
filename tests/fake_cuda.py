"""A fake of the parts of ``torch.cuda`` that CUDA-graph capture uses, with the caching
allocator's rule for private pools, so the capture logic is tested without a GPU.

The rule (c10/cuda/CUDACachingAllocator.cpp, beginAllocateToPool): a capture into a pool
that exists asserts ``use_count > 0``; a pool's use count is the number of live graphs
captured into it; a pool whose count reached 0 is freed only once every block allocated
in it is freed. So destroying every graph of a pool while one of its tensors lives, then
capturing into it again, raises. ``gpu-check`` confirms the rule on real CUDA.
"""

from __future__ import annotations

import contextlib
import itertools
import weakref

import torch


class FakeCuda:
    def __init__(self):
        self.pools: dict[int, dict] = {}  # id -> {"use_count": int, "blocks": [weakref]}
        self.capturing: int | None = None
        self.live_graphs = weakref.WeakSet()
        self._ids = itertools.count(1)

    # -- the API GraphedStep uses ------------------------------------------------
    def graph_pool_handle(self) -> int:
        return next(self._ids)

    def CUDAGraph(self):  # noqa: N802 (torch's name)
        graph = FakeGraph(self)
        self.live_graphs.add(graph)
        return graph

    @contextlib.contextmanager
    def graph(self, graph, pool):
        self.free_released_pools()
        pool_state = self.pools.get(pool)
        if pool_state is None:
            self.pools[pool] = pool_state = {"use_count": 0, "blocks": []}
        elif pool_state["use_count"] <= 0:
            raise RuntimeError("INTERNAL ASSERT FAILED: it->second->use_count > 0")
        pool_state["use_count"] += 1
        graph.pool = pool
        self.capturing = pool
        try:
            yield
        finally:
            self.capturing = None

    def Stream(self):  # noqa: N802
        return FakeStream()

    def current_stream(self):
        return FakeStream()

    @contextlib.contextmanager
    def stream(self, _stream):
        yield

    # -- what the test's step uses -------------------------------------------------
    def empty(self, n: int) -> torch.Tensor:
        """A tensor allocated from the pool under capture (or outside any pool)."""
        t = torch.zeros(n)
        if self.capturing is not None:
            self.pools[self.capturing]["blocks"].append(weakref.ref(t))
        return t

    def live_blocks(self, pool: int) -> int:
        return sum(ref() is not None for ref in self.pools[pool]["blocks"])

    def release(self, pool: int) -> None:
        """A graph of the pool is destroyed."""
        if pool in self.pools:
            self.pools[pool]["use_count"] -= 1

    def free_released_pools(self) -> None:
        """A pool without graphs is freed once its last block is (the allocator does it when that block is freed)."""
        for pool in [
            p
            for p, state in self.pools.items()
            if state["use_count"] == 0 and not self.live_blocks(p)
        ]:
            del self.pools[pool]

    def live_pools(self) -> list[int]:
        self.free_released_pools()
        return list(self.pools)


class FakeGraph:
    def __init__(self, cuda: FakeCuda):
        self.cuda, self.pool, self.replays = cuda, None, 0

    def replay(self):
        self.replays += 1

    def __del__(self):
        if self.pool is not None:
            self.cuda.release(self.pool)


class FakeStream:
    def wait_stream(self, _other):
        pass
