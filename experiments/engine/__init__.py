"""The engine: everything a run's numbers pass through, and nothing else.

The run config (``config``), the data on the device and its batches (``data``), augmentation
(``augment``), the step (eager; ``compiled``: torch.compile on the CPU; ``cuda_graph``: one replayed CUDA
graph), the center rules (``center_rules``), the trainer (``trainer``) and the typed entry ``run_one``
(``run``). It imports only ``losses/``, ``models/``, ``eval/`` and the data specs
(``experiments/datasets/specs.py``), never a runner, the ledger, the report or a command, and its files
are what every run's code fingerprint hashes (experiments/ledger/fingerprint.py).
"""
