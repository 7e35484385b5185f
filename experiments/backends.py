"""Where the grid's runs are trained. A backend maps "train this config" over the runs still
to do and yields one ``Outcome`` per run as it ends; the grid records outcomes and never
asks which backend made them.

``LocalBackend(1)`` trains in this process; ``LocalBackend(k)`` trains k runs side by
side in separate processes (one GPU shared, or CPU threads split). Workers ignore Ctrl-C
and SIGTERM: the driver tells them to stop after their current epoch, so every run keeps
a checkpoint of its last finished epoch.
"""
from __future__ import annotations

import multiprocessing
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass

import torch

from experiments.data import DeviceData
from experiments.provenance import resolve_device
from experiments.train import load_data, run_one
from experiments.trainer import RunStopped


@dataclass
class Outcome:
    """How one run ended: ``result`` (finished or diverged), ``error`` (failed: recorded, retried
    next time) or ``stopped`` (epochs done when the budget ended; None otherwise: not recorded)."""
    cfg: object
    result: dict | None = None
    error: str | None = None
    stopped: int | None = None


_data_cache: dict[tuple, DeviceData] = {}


def train_cached(cfg, args, device, should_stop) -> dict:
    """Train one config, reusing the dataset already on the device when it fits."""
    key = (cfg.dataset, cfg.train_size, cfg.test_size, cfg.protocol)
    if key not in _data_cache:
        _data_cache.clear()
        _data_cache[key] = load_data(cfg, args.data_root, device)
    result = run_one(cfg, args, _data_cache[key], device, should_stop)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def train_outcome(cfg, args, device, should_stop) -> Outcome:
    try:
        return Outcome(cfg, result=train_cached(cfg, args, device, should_stop))
    except RunStopped as e:
        return Outcome(cfg, stopped=e.epochs_done)
    except Exception as e:  # recorded, and the grid goes on
        return Outcome(cfg, error=f"{type(e).__name__}: {e}")


class LocalBackend:
    def __init__(self, parallel: int = 1):
        self.parallel = parallel

    def run(self, configs, args, budget, estimate_s):
        """Yield an Outcome per config; a config the budget does not allow is yielded as stopped
        without training. ``estimate_s(cfg)``: its expected seconds, or None."""
        if self.parallel == 1:
            device = resolve_device(args.device)
            for cfg in configs:
                if not budget.allows(estimate_s(cfg)):
                    yield Outcome(cfg, stopped=0)
                    continue
                yield train_outcome(cfg, args, device, budget.expired)
            return
        yield from self.run_packed(configs, args, budget, estimate_s)

    def run_packed(self, configs, args, budget, estimate_s):
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        args.no_progress = True  # per-epoch bars of parallel workers would interleave
        threads = max(1, torch.get_num_threads() // self.parallel)
        pool = ProcessPoolExecutor(self.parallel, mp_context=context, initializer=_init_worker, initargs=(stop,))
        try:
            pending = {pool.submit(_worker, cfg, args, threads, budget.deadline, estimate_s(cfg)): cfg
                       for cfg in configs}
            while pending:
                done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                if budget.expired():
                    stop.set()
                for future in done:
                    cfg = pending.pop(future)
                    error = future.exception()
                    yield Outcome(cfg, error=f"{type(error).__name__}: {error}") if error else future.result()
        except KeyboardInterrupt:
            stop.set()  # workers end their current epoch, checkpoint it and return
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


_stop_event = None


def _init_worker(stop) -> None:
    """Worker initialiser: stops only when the driver says so; dies with the driver (Linux)."""
    global _stop_event
    _stop_event = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker(cfg, args, threads: int, deadline: float | None, estimate_s: float | None) -> Outcome:
    torch.set_num_threads(threads)
    late = deadline is not None and estimate_s is not None and time.time() + estimate_s > deadline
    if _stop_event.is_set() or late:
        return Outcome(cfg, stopped=0)
    return train_outcome(cfg, args, resolve_device(args.device), _stop_event.is_set)
