"""The model's forward through ``torch.compile`` on the CPU, with a fallback to eager.

Inductor turns the forward and backward into fused C++ kernels. Asked for
with ``--compile``: whether it pays depends on the CPU (on a 2-core AVX2
machine the bench measured it slower than eager channels_last; the issue
that asked for it measured 1.7x on an AVX-512 one). Compiling costs about
40 s once, counted in the first epoch and logged; where it fails (no C++
compiler, an unsupported torch) the run goes on eagerly after one warning
line. Shapes are static: training batches have a fixed size, and
evaluation runs every chunk through one full-size buffer.
"""

from __future__ import annotations

import time

import torch


class CompiledForward:
    """``forward(x)``: the compiled model, or the eager one once compilation has failed."""

    def __init__(self, model: torch.nn.Module, log=print, compile_fn=torch.compile):
        self.model, self.log = model, log
        self.fn = compile_fn(model, dynamic=False)
        self.compile_s: float | None = None

    def __call__(self, x: torch.Tensor):
        if self.fn is self.model:
            return self.model(x)
        t0 = time.perf_counter()
        try:
            out = self.fn(x)
        except Exception as e:  # a compiler error surfaces at the first call of each new graph
            lines = str(e).strip().splitlines()
            self.log(
                f"warning: torch.compile failed ({lines[0][:120] if lines else type(e).__name__}); "
                "going on eagerly"
            )
            self.fn = self.model
            return self.model(x)
        if self.compile_s is None:
            self.compile_s = time.perf_counter() - t0
            self.log(f"torch.compile: {self.compile_s:.0f} s to compile the forward (once per run)")
        return out
