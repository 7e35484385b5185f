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
- Every capture goes into one private memory pool. PyTorch's caching allocator
  refuses to capture into a pool whose graphs are all destroyed while tensors
  allocated in it (the static output, the gradients) are still alive (it
  asserts ``use_count > 0``), so the old graph is kept until the new one is
  captured and only then released: at most two graphs live at once, and what
  the old one held goes back to the pool for the next capture, so memory does
  not grow with the number of recaptures. ``gpu-check`` confirms the rule on
  real CUDA (``experiments/probes/graph_pool.py``).
- GradScaler (fp16) syncs with the host on every step and cannot be captured;
  the trainer uses eager steps for fp16.
- ``release()`` drops the graph, its pool and the step function (a bound
  method of the trainer), so a finished run frees its memory at once.
"""

from __future__ import annotations

import torch


class GraphedStep:
    def __init__(
        self,
        step_fn,
        batch_size: int,
        device: torch.device,
        current_lrs,
        warmup: int = 3,
        cuda=torch.cuda,
    ):
        self.step_fn, self.current_lrs, self.warmup_left, self.cuda = (
            step_fn,
            current_lrs,
            warmup,
            cuda,
        )
        self.static_index = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.graph, self.captured_lrs, self.static_out = None, None, None
        self.pool = cuda.graph_pool_handle()
        self.captures = 0

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        self.static_index.copy_(index)
        if self.warmup_left > 0:
            self.warmup_left -= 1
            side = self.cuda.Stream()
            side.wait_stream(self.cuda.current_stream())
            with self.cuda.stream(side):
                out = self.step_fn(self.static_index)
            self.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None or self.current_lrs() != self.captured_lrs:
            self.capture()
        self.graph.replay()
        return self.static_out

    def capture(self) -> None:
        """Capture the step into the pool while the previous graph (if any) still holds it."""
        graph = self.cuda.CUDAGraph()
        with self.cuda.graph(graph, pool=self.pool):
            static_out = self.step_fn(self.static_index)
        self.graph, self.static_out, self.captured_lrs = (
            graph,
            static_out,
            self.current_lrs(),
        )  # old graph freed here
        self.captures += 1

    def release(self) -> None:
        self.graph = self.static_out = self.step_fn = self.current_lrs = self.pool = None
