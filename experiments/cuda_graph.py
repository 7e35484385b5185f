"""The whole training step as one CUDA graph, replayed every step.

The step (batch gather, augmentation, forward, every loss term, backward,
optimizer and center updates) is captured once on a static index tensor;
each step copies the batch indices into it and replays the graph, so the
Python and launch overhead of a few hundred kernels is paid once.

- The first ``warmup`` steps run eagerly on a side stream (real training
  steps: they create the momentum buffers and let cuDNN pick its kernels).
- A graph bakes in the learning rates it was captured with (SGD reads lr as a
  Python number), so the step is recaptured when any lr changes; under
  ReduceLROnPlateau that is a handful of times per run.
- GradScaler (fp16) syncs with the host on every step and cannot be captured;
  the trainer uses eager steps for fp16.
"""
from __future__ import annotations

import torch


class GraphedStep:
    def __init__(self, step_fn, batch_size: int, device: torch.device, current_lrs, warmup: int = 3):
        self.step_fn, self.current_lrs, self.warmup_left = step_fn, current_lrs, warmup
        self.static_index = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.graph, self.captured_lrs, self.static_out = None, None, None
        self.pool = torch.cuda.graph_pool_handle()
        self.captures = 0

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        self.static_index.copy_(index)
        if self.warmup_left > 0:
            self.warmup_left -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step_fn(self.static_index)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None or self.current_lrs() != self.captured_lrs:
            self.capture()
        self.graph.replay()
        return self.static_out

    def capture(self) -> None:
        self.graph = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.static_out = self.step_fn(self.static_index)
        self.graph, self.captured_lrs = graph, self.current_lrs()
        self.captures += 1
