"""Where the grid's runs are trained: this machine, a Ray cluster, or SLURM (submitit).

A backend maps a task (``train_run`` by default; the tuner's workers too) over
the runs still to do, with the settings they share (``RunSettings``, or the
task's own), and yields one ``Outcome`` per run as it ends; the grid records
the outcomes and never asks which backend made them. Every backend stops the same way: the driver creates a stop file in
the run folder (``--out``, which on a cluster must be on a filesystem every
worker sees) when its time budget ends or it gets SIGTERM or Ctrl-C, and each
run checks for it after every epoch, checkpoints and returns.

- ``local``: ``runs_at_once`` 1 trains in this process; more train side by side
  in separate processes (one GPU shared, or the CPU threads split).
- ``ray``: one Ray task per run with ``1 / runs_per_gpu`` of a GPU (when the
  cluster has GPUs) and ``cpus_per_run`` CPUs; a local Ray instance, or the
  cluster at ``--ray-address`` (``auto`` or ``host:port``, started with ``ray start``).
- ``slurm``: one submitit job array (``--slurm-partition``, ``--slurm-time``,
  ``--slurm-gpus-per-task``, ``--slurm-parallelism``); where there is no SLURM,
  submitit runs the jobs as local processes, as many at once as the cores allow.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch

from experiments import REPO
from experiments.datasets.sources import prepare_run
from experiments.engine.data import DeviceData, load_data
from experiments.engine.device import device_name, resolve_device
from experiments.engine.run import RunContext, run_one
from experiments.engine.trainer import RunStopped
from experiments.ledger.claims import Claim
from experiments.ledger.fingerprint import code_fingerprint
from experiments.ledger.provenance import code_version
from experiments.ledger.rows import checkpoint_problem, failed_row, is_done, record, row_from_result
from experiments.ledger.tensorboard import TensorBoardLog


@dataclass(frozen=True)
class RunSettings:
    """What every run of one command shares and its config does not hold: where runs write (``out``: the run
    directories; ``results``: the ledger), where the data lives, the device, and how the steps run."""

    out: Path
    results: Path
    data_root: Path
    device: str = "auto"
    progress: bool = True
    graph: bool = True  # False: eager steps on CUDA (--no-graph)
    compile: bool = False
    reuse_stale: bool = False  # a run recorded by other code counts as done

    def context(self, device: torch.device, should_stop) -> RunContext:
        """The engine's context of a run of ``cfg`` under these settings."""
        return RunContext(
            device=device,
            data_root=self.data_root,
            out=self.out,
            should_stop=should_stop,
            progress=self.progress,
            use_graph=None if self.graph else False,
            compile=self.compile,
            code_version=code_version(),
            epoch_log=TensorBoardLog,
        )


@dataclass
class Outcome:
    """How one run ended: ``result`` (finished or diverged), ``error`` (failed: recorded, retried
    next time), ``stopped`` (epochs done when told to stop; None otherwise: not recorded) or
    ``skipped`` (another runner trains it or has recorded it)."""

    cfg: object
    result: dict | None = None
    error: str | None = None
    stopped: int | None = None
    skipped: str | None = (
        None  # why another runner has it (claimed, or recorded meanwhile): not counted here
    )
    recorded: bool = False  # the process that trained it recorded its row


@dataclass(frozen=True)
class Stop:
    """What a run is told about stopping: the driver's stop file and its deadline (epoch seconds)."""

    file: Path
    deadline: float | None

    def __call__(self) -> bool:
        return self.file.exists() or (self.deadline is not None and time.time() >= self.deadline)

    def allows(self, estimate_s: float | None) -> bool:
        late = (
            self.deadline is not None
            and estimate_s is not None
            and time.time() + estimate_s > self.deadline
        )
        return not (self() or late)


@dataclass(frozen=True)
class DataSplit:
    """What a run's data depends on (the config fields engine/data.load_data reads): runs that share it share
    the tensors on the device."""

    dataset: str
    train_size: int | None
    test_size: int | None
    protocol: str
    known_classes: str
    ood_images: str

    @classmethod
    def of(cls, cfg) -> DataSplit:
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


@functools.lru_cache(
    maxsize=1
)  # a worker keeps one dataset on its device: a grid's runs of one split reuse it
def device_data(split: DataSplit, data_root: Path, device: torch.device) -> DeviceData:
    """The split's tensors on ``device`` (fetched and checked first), loaded once per worker process."""
    prepare_run(split.dataset, data_root)
    return load_data(split, data_root, device)


def graph_safe(loss: str) -> bool:
    """Whether the loss's forward can be captured in a CUDA graph: a loss class declares ``graph_safe = False``
    where its code syncs with the host or makes shapes that depend on the data (pytorch-metric-learning's
    masks and miners); tests/test_losses_pml.py checks every declaration op by op."""
    from centersuite.losses import LOSSES

    return getattr(LOSSES[loss], "graph_safe", True)


def eager_for_loss(ctx: RunContext, loss: str, device: torch.device) -> RunContext:
    """The context with eager steps where the loss cannot be captured on CUDA (the run's log says so)."""
    if device.type != "cuda" or ctx.use_graph is False or graph_safe(loss):
        return ctx
    ctx.log(
        f"note: {loss} syncs with the host inside its step (its library's masks or miner); "
        "this run takes eager steps instead of one CUDA graph per step"
    )
    return dataclasses.replace(ctx, use_graph=False)


def train_cached(cfg, settings: RunSettings, device, should_stop) -> dict:
    """Train one config, reusing the dataset already on the device when it is the same split."""
    data = device_data(DataSplit.of(cfg), Path(settings.data_root).resolve(), device)
    ctx = dataclasses.replace(
        settings.context(device, should_stop), fingerprint=code_fingerprint(cfg.loss, cfg.model)
    )
    result = run_one(cfg, eager_for_loss(ctx, cfg.loss, device), data)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def current_fingerprint(settings: RunSettings, cfg) -> str | None:
    """The fingerprint a recorded run must have to count as done: the code's now, or any under --reuse-stale."""
    return None if settings.reuse_stale else code_fingerprint(cfg.loss, cfg.model)


def train_run(
    cfg, settings: RunSettings, threads: int | None, stop: Stop, estimate_s: float | None
) -> Outcome:
    """Train one run wherever this is called (this process, a worker process, a Ray task, a SLURM job),
    holding its claim (experiments/ledger/claims.py) until its row is recorded in the ledger."""
    if not stop.allows(estimate_s):
        return Outcome(cfg, stopped=0)
    claim = Claim(settings.out, cfg.run_id)
    if not claim.take():
        return Outcome(cfg, skipped=f"being trained by another runner ({claim.describe_holder()})")
    taken = []

    def should_stop() -> (
        bool
    ):  # asked after every epoch: the budget, SIGTERM, or the claim taken over
        if not claim.held():
            taken.append(True)
        return bool(taken) or stop()

    try:
        if is_done(settings.results, cfg.run_id, current_fingerprint(settings, cfg)):
            return Outcome(cfg, skipped="recorded by another runner meanwhile")
        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(settings.device)
        unreadable = checkpoint_problem(
            Path(settings.out) / cfg.run_id, code_fingerprint(cfg.loss, cfg.model)
        )
        try:
            outcome = (
                Outcome(cfg, error=unreadable)
                if unreadable
                else Outcome(cfg, result=train_cached(cfg, settings, device, should_stop))
            )
        except RunStopped as e:
            if taken:
                return Outcome(
                    cfg,
                    skipped=f"its claim was taken over after epoch {e.epochs_done} (this runner was "
                    "paused?); stopped here, nothing recorded",
                )
            return Outcome(cfg, stopped=e.epochs_done)
        except Exception as e:  # recorded as failed, and the grid goes on
            outcome = Outcome(cfg, error=f"{type(e).__name__}: {e}")
        if not claim.held():
            return Outcome(
                cfg,
                skipped="its claim was taken over before it was recorded (this runner was paused?); "
                "nothing recorded",
            )
        record_outcome(settings, outcome, device_name(device))
        outcome.recorded = True
        return outcome
    finally:
        claim.release()


def record_outcome(settings: RunSettings, outcome: Outcome, device: str) -> None:
    """The run's row (and its epochs) into the ledger: finished, diverged or failed."""
    cfg = outcome.cfg
    if outcome.error is not None:
        print(f"run {cfg.run_id} failed: {outcome.error}", file=sys.stderr)
        record(settings.results, failed_row(cfg.to_dict(), cfg.run_id, outcome.error, device), [])
        return
    epoch_rows = []
    if outcome.result["epochs_done"]:  # a run that diverged in its first epoch wrote no metrics.csv
        with open(Path(settings.out) / cfg.run_id / "metrics.csv", newline="") as f:
            epoch_rows = list(csv.DictReader(f))
    record(settings.results, row_from_result(outcome.result), epoch_rows)


def error_outcome(cfg, error: BaseException) -> Outcome:
    """A worker that died (or a task the cluster lost): recorded as failed, retried next time."""
    lines = str(error).strip().splitlines()
    return Outcome(cfg, error=f"{type(error).__name__}: {lines[-1] if lines else ''}")


class LocalBackend:
    def __init__(self, runs_at_once: int, cpus_per_run: int | None):
        self.runs_at_once, self.cpus_per_run = runs_at_once, cpus_per_run

    def run(self, configs, settings, stop: Stop, estimate_s, task=train_run):
        if self.runs_at_once == 1:
            for cfg in configs:
                yield task(cfg, settings, self.cpus_per_run, stop, estimate_s(cfg))
            return
        settings = dataclasses.replace(
            settings, progress=False
        )  # per-epoch bars of parallel workers would interleave
        threads = self.cpus_per_run or max(1, torch.get_num_threads() // self.runs_at_once)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            self.runs_at_once, mp_context=context, initializer=_init_worker
        ) as pool:
            pending = {
                pool.submit(task, cfg, settings, threads, stop, estimate_s(cfg)): cfg
                for cfg in configs
            }
            try:
                while pending:
                    done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                    for future in done:
                        cfg = pending.pop(future)
                        error = future.exception()
                        yield error_outcome(cfg, error) if error else future.result()
            except (
                BaseException
            ):  # Ctrl-C: the workers end their current epoch, checkpoint it and return
                stop.file.touch()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


def _init_worker() -> None:
    """Worker processes stop when the driver's stop file says so, and die with the driver (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RayBackend:
    def __init__(self, address: str | None, runs_per_gpu: int, cpus_per_run: int | None):
        self.address, self.runs_per_gpu, self.cpus_per_run = address, runs_per_gpu, cpus_per_run

    def run(self, configs, settings, stop: Stop, estimate_s, task=train_run):
        import ray

        handler = signal.getsignal(signal.SIGTERM)
        ray.init(
            address=self.address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
        )
        signal.signal(signal.SIGTERM, handler)  # ray.init replaces the driver's SIGTERM handler
        try:
            gpus = 1 / self.runs_per_gpu if ray.cluster_resources().get("GPU", 0) > 0 else 0
            cpus = self.cpus_per_run or 1
            remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(task)
            settings = dataclasses.replace(settings, progress=False)
            pending = {
                remote.remote(cfg, settings, cpus, stop, estimate_s(cfg)): cfg for cfg in configs
            }
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in done:
                    cfg = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as e:  # the task's worker died
                        yield error_outcome(cfg, e)
        except BaseException:
            stop.file.touch()
            raise
        finally:
            ray.shutdown()


class SlurmBackend:
    def __init__(
        self,
        partition: str | None,
        minutes: int,
        gpus_per_task: int,
        parallelism: int,
        cpus_per_run: int | None,
        runs_per_gpu: int,
    ):
        self.partition, self.minutes, self.gpus_per_task = partition, minutes, gpus_per_task
        self.parallelism, self.cpus_per_run, self.runs_per_gpu = (
            parallelism,
            cpus_per_run,
            runs_per_gpu,
        )

    def local_window(self) -> int:
        """Jobs at once without SLURM (submitit's local processes): ``runs_per_gpu`` per visible GPU,
        or as many as the cores allow on a machine without CUDA."""
        if torch.cuda.is_available():
            return self.runs_per_gpu * torch.cuda.device_count()
        return max(1, (os.cpu_count() or 1) // (self.cpus_per_run or 1))

    def run(self, configs, settings, stop: Stop, estimate_s, task=train_run):
        import submitit

        if not configs:
            return
        executor = submitit.AutoExecutor(folder=Path(settings.out) / ".submitit" / "%j")
        executor.update_parameters(
            name="centerloss-grid",
            timeout_min=self.minutes,
            cpus_per_task=self.cpus_per_run or 1,
            gpus_per_node=self.gpus_per_task,
            slurm_array_parallelism=self.parallelism,
            **({"slurm_partition": self.partition} if self.partition else {}),
        )
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
        )
        settings = dataclasses.replace(settings, progress=False)
        cpus = self.cpus_per_run or 1
        queue = list(configs)
        if (
            executor.cluster == "slurm"
        ):  # one job array; SLURM keeps --slurm-parallelism of them running
            n = len(queue)
            jobs = executor.map_array(
                task, queue, [settings] * n, [cpus] * n, [stop] * n, [estimate_s(c) for c in queue]
            )
            pending, queue, window = dict(zip(jobs, queue)), [], n
        else:  # local processes
            pending, window = {}, self.local_window()
        try:
            while pending or queue:
                while queue and len(pending) < window:
                    cfg = queue.pop(0)
                    pending[executor.submit(task, cfg, settings, cpus, stop, estimate_s(cfg))] = cfg
                for job in [j for j in pending if j.done()]:
                    cfg = pending.pop(job)
                    try:
                        yield job.result()
                    except Exception as e:  # the job died: out of memory, cancelled, node failure
                        yield error_outcome(cfg, e)
                time.sleep(0.5)
        except (
            BaseException
        ):  # Ctrl-C: running jobs end their current epoch, queued ones return at once
            stop.file.touch()
            raise


def build_backend(
    name: str,
    device: torch.device,
    runs_per_gpu: int | None = None,
    cpus_per_run: int | None = None,
    ray_address: str | None = None,
    slurm_partition: str | None = None,
    slurm_minutes: int = 240,
    slurm_gpus_per_task: int = 1,
    slurm_parallelism: int = 16,
):
    """The backend of that name (``BACKENDS``); ``runs_per_gpu`` None: ``default_runs_per_device``."""
    runs_per_gpu = runs_per_gpu or default_runs_per_device(device)
    if name == "ray":
        return RayBackend(ray_address, runs_per_gpu, cpus_per_run)
    if name == "slurm":
        return SlurmBackend(
            slurm_partition,
            slurm_minutes,
            slurm_gpus_per_task,
            slurm_parallelism,
            cpus_per_run,
            runs_per_gpu,
        )
    return LocalBackend(runs_per_gpu, cpus_per_run)


def default_runs_per_device(device: torch.device) -> int:
    """Small models leave a large GPU idle between kernels; a few runs side by side fill it."""
    if device.type != "cuda":
        return 1
    return 4 if torch.cuda.get_device_properties(device).total_memory >= 40 * 2**30 else 2
