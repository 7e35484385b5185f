"""Probe, on real CUDA, the caching allocator's rule that GraphedStep relies on.

    python -m experiments.probes.graph_pool          # both patterns, each in its own process

- ``old``: capture into a private pool, destroy the graph while its output is
  alive, capture again into the same pool. PyTorch asserts ``use_count > 0``
  there; the trainer did this at every lr drop before the fix.
- ``new``: ``GraphedStep`` recaptured 20 times (the lr changed each time),
  which keeps the old graph until the new one is captured; it must pass, give
  the right values, and reserve no more memory after the last capture than
  after the second.

Each pattern runs in a child process (a failed capture may leave CUDA state
behind). Prints one line per pattern; exits 1 when the new pattern fails.
Without CUDA it says so in one line and exits 0.
"""

from __future__ import annotations

import subprocess
import sys

import torch

from experiments.engine.cuda_graph import GraphedStep


def old_pattern() -> None:
    x = torch.arange(256, device="cuda", dtype=torch.float32)
    pool = torch.cuda.graph_pool_handle()
    outputs = []
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        outputs.append(x * 2)
    del graph  # the pool's only graph is gone; its output still holds a block of it
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        outputs.append(x * 3)
    graph.replay()
    torch.cuda.synchronize()


def new_pattern() -> None:
    x = torch.arange(256, device="cuda", dtype=torch.float32)
    lrs = [1.0]
    step = GraphedStep(
        lambda index: x[index] * lrs[0], 64, torch.device("cuda"), lambda: list(lrs), warmup=1
    )
    index = torch.arange(64, device="cuda")
    step(index)
    reserved = []
    for k in range(20):
        lrs[0] = 2.0 + k
        out = step(index)
        torch.cuda.synchronize()
        if not torch.equal(out, x[:64] * lrs[0]):
            raise AssertionError(f"capture {k + 1}: wrong values")
        reserved.append(torch.cuda.memory_reserved())
    if step.captures != 20 or reserved[-1] > reserved[1]:
        raise AssertionError(
            f"{step.captures} captures; reserved memory {reserved[1]} -> {reserved[-1]} bytes"
        )
    step.release()


PATTERNS = {"old": old_pattern, "new": new_pattern}


def run_pattern(name: str, timeout_s: float) -> tuple[bool, str]:
    """``(passed, last line of its error)`` of one pattern in a child process."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "experiments.probes.graph_pool", name],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return False, f"no answer within {timeout_s:.0f} s"
    lines = done.stderr.strip().splitlines()
    return done.returncode == 0, lines[-1][:200] if lines else ""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not torch.cuda.is_available():
        print("graph-pool probe: no CUDA device here; nothing to probe")
        return 0
    if argv:
        PATTERNS[argv[0]]()
        return 0
    old_ok, old_error = run_pattern("old", 60)
    new_ok, new_error = run_pattern("new", 60)
    print(
        "graph-pool probe: old pattern (destroy the graph, recapture into its pool): "
        + (
            "raised, as the CPU fake models: " + old_error
            if not old_ok
            else "did not raise on this torch (the fake is stricter; the fix is harmless)"
        )
    )
    print(
        "graph-pool probe: new pattern (GraphedStep, 20 recaptures): "
        + ("PASS" if new_ok else "FAIL: " + new_error)
    )
    return 0 if new_ok else 1


if __name__ == "__main__":
    sys.exit(main())
