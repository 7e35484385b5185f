"""The CUDA path's rules, checked on the CPU: graph capture against a fake of the caching
allocator, device pinning, RNG state per device, memory freed at the end of a run, the
SLURM fallback's window, the budgeted gpu-check, offline data, and ./suite's choice of Python."""

import gc
import os
import subprocess
import sys
import time
import warnings
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from experiments import bench, gpu_check
from experiments.cli.recipe import backend_from_args
from experiments.datasets.sources import Source, ensure, run_limited
from experiments.datasets.specs import DataError, default_data_root
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.cuda_graph import GraphedStep
from experiments.engine.device import resolve_device
from experiments.engine.records import restore_rng_state, rng_state
from experiments.engine.trainer import RunStopped, Trainer
from experiments.probes import bench as probe
from experiments.runners import backends
from tests.fake_cuda import FakeCuda

REPO = Path(__file__).resolve().parent.parent


# ---- 1. recapture after an lr change -------------------------------------------------
def graphed_step(fake: FakeCuda, lrs: list[float]) -> GraphedStep:
    def step_fn(
        index,
    ):  # like the real step: its output (and gradients) come from the pool under capture
        return fake.empty(4).add_(index.sum() * lrs[0])

    return GraphedStep(step_fn, 8, torch.device("cpu"), lambda: list(lrs), warmup=1, cuda=fake)


def test_the_fake_allocator_refuses_a_pool_whose_graphs_are_gone_while_its_tensors_live():
    fake = FakeCuda()
    pool = fake.graph_pool_handle()
    graph = fake.CUDAGraph()
    with fake.graph(graph, pool=pool):
        out = fake.empty(4)
    del graph  # the old GraphedStep.capture did this (self.graph = None) before recapturing
    with pytest.raises(RuntimeError, match="use_count > 0"):
        with fake.graph(fake.CUDAGraph(), pool=pool):
            pass
    assert out is not None


def test_the_step_is_recaptured_after_every_lr_change_without_growing():
    fake, lrs = FakeCuda(), [0.1]
    step = graphed_step(fake, lrs)
    index = torch.arange(8)
    step(index)  # warm-up, eager
    for k in range(10):
        lrs[0] = 0.1 / 2**k
        out = step(index)
        assert out is step.static_out
    assert step.captures == 10
    assert len(fake.live_graphs) == 1 and fake.live_pools() == [step.pool]
    assert fake.live_blocks(step.pool) == 1  # the old graphs' outputs went back to the pool
    del out
    step.release()
    assert (
        fake.live_pools() == [] and len(fake.live_graphs) == 0
    )  # released cleanly: no graph, no block


# ---- 2. tests run on the CPU whatever the machine has -----------------------------------
def test_tests_not_marked_gpu_resolve_the_automatic_device_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    assert resolve_device("auto") == torch.device("cpu")
    assert os.environ["SUITE_DEVICE"] == "cpu"  # inherited by the processes a test starts


def test_the_bench_picks_the_synthetic_set_when_no_dataset_is_present(tmp_path):
    assert bench.default_datasets(cuda=True, root=tmp_path) == ["synthetic"]
    assert bench.default_datasets(cuda=False, root=tmp_path) == ["synthetic"]


# ---- 4. fp16 with the graph mode ----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_data():
    """A few synthetic images: fp16 is emulated (slow) on the CPU, and what these tests check does not
    depend on how many images a run trains on."""
    from experiments.datasets.specs import get_spec
    from experiments.engine.data import DeviceData

    return DeviceData(get_spec("synthetic"), Path("data"), torch.device("cpu"), 128, 100)


@pytest.mark.slow
def test_the_bench_runs_fp16_eagerly_when_the_graph_mode_is_asked(tiny_data):
    row = probe.bench_one(
        tiny_data, "synthetic", "standalone", "graph", 2, torch.device("cpu"), "fp16", batch_size=32
    )
    assert row["mode"] == probe.FP16_EAGER and row["precision"] == "fp16" and row["finite"]


# ---- 7. RNG state of the run's device only ------------------------------------------------
def test_a_checkpoint_made_with_two_gpus_resumes_on_a_machine_with_one(monkeypatch):
    states = {0: torch.tensor([10], dtype=torch.uint8), 1: torch.tensor([11], dtype=torch.uint8)}
    set_calls = []

    def device_index(device):
        return 0 if device is None else torch.device(device).index or 0

    def get_rng_state(device="cuda"):
        return states[device_index(device)].clone()

    def set_rng_state(state, device="cuda"):
        if device_index(device) >= visible[0]:
            raise RuntimeError("invalid device ordinal")
        set_calls.append((device_index(device), int(state[0])))

    def get_all():
        return [states[i].clone() for i in range(visible[0])]

    def set_all(new_states):
        for i, state in enumerate(new_states):
            set_rng_state(state, i)

    visible = [2]
    monkeypatch.setattr(torch.cuda, "get_rng_state", get_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", get_all)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_all)
    saved = rng_state(torch.device("cuda:1"))  # trained on the second of two GPUs
    visible[0] = 1  # resumed where only one GPU is visible (CUDA_VISIBLE_DEVICES=1)
    restore_rng_state(saved, torch.device("cuda:0"))
    assert set_calls == [
        (0, 11)
    ]  # the generator of the GPU the run trained on, onto the one it resumes on


# ---- 8. a finished run frees its memory ---------------------------------------------------
def tiny_trainer(data, run_dir, epochs=2):
    cfg = RunConfig(
        dataset="synthetic",
        loss="cent",
        feat_dim=8,
        epochs=epochs,
        batch_size=32,
        train_size=128,
        test_size=100,
    )
    return Trainer(
        cfg,
        data,
        run_dir,
        RunContext(device=torch.device("cpu"), progress=False, log=lambda *_: None),
    )


@pytest.mark.slow
@pytest.mark.parametrize("stop", [False, True])
def test_a_finished_or_stopped_trainer_is_freed_without_the_cycle_collector(
    stop, tiny_data, tmp_path
):
    trainer = tiny_trainer(tiny_data, tmp_path)
    gc.collect()
    gc.disable()
    try:
        if stop:
            with pytest.raises(RunStopped):
                trainer.fit(should_stop=lambda: True)
        else:
            trainer.fit()
        ref = weakref.ref(trainer)
        del trainer
        assert ref() is None
    finally:
        gc.enable()


# ---- 10. the SLURM backend's local fallback ---------------------------------------------
def test_slurm_without_slurm_runs_runs_per_gpu_jobs_per_visible_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(backends, "default_runs_per_device", lambda device: 4)
    args = SimpleNamespace(
        backend="slurm",
        runs_per_gpu=None,
        cpus_per_run=None,
        slurm_partition=None,
        slurm_time=60,
        slurm_gpus_per_task=1,
        slurm_parallelism=4,
        ray_address=None,
    )
    assert backend_from_args(args, torch.device("cpu")).local_window() == 4  # the local/ray default
    args.runs_per_gpu = 2
    assert backend_from_args(args, torch.device("cpu")).local_window() == 2
    assert (
        backend_from_args(
            SimpleNamespace(**{**vars(args), "backend": "ray"}), torch.device("cpu")
        ).runs_per_gpu
        == 2
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert backend_from_args(args, torch.device("cpu")).local_window() == 16  # no GPU: the cores


# ---- 3. gpu-check: exit codes, a total budget, one folder ---------------------------------
def test_a_step_that_runs_out_of_its_share_ends_in_one_line(tmp_path):
    ok, line = gpu_check.run_step(
        "tests", [sys.executable, "-c", "import time; time.sleep(30)"], 1.0, tmp_path / "tests.log"
    )
    assert not ok
    assert line.startswith(
        "tests: stopped when its share of the budget (1 s) ran out; raise --max-minutes"
    )
    ok, line = gpu_check.run_step(
        "bench",
        [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
        30,
        tmp_path / "bench.log",
    )
    assert not ok and line.startswith("bench: exit code 3: boom")


def test_gpu_check_splits_its_budget_and_writes_only_into_its_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    given = {}

    def fake_step(name, cmd, seconds, log):
        given[name] = (seconds, cmd)
        log.write_text(
            "graph-pool probe: new pattern (GraphedStep, 20 recaptures): PASS\n"
            if name == "probe"
            else ""
        )
        if name == "bench":
            rows = [{**gpu_row("graph", "fp32"), "finite": "True"}]
            with open(log.parent / "bench.csv", "w") as f:
                f.write(",".join(rows[0]) + "\n" + ",".join(rows[0].values()) + "\n")
        return name != "tests", f"{name}: exit code {0 if name != 'tests' else 1}"

    monkeypatch.setattr(gpu_check, "run_step", fake_step)
    out = tmp_path / "check"
    assert gpu_check.main(["--max-minutes", "2", "--out", str(out)]) == 1  # the tests step failed
    # each step gets its share of what is left (time a step leaves unused passes on), never more than is left
    assert given["probe"][0] == pytest.approx(12, abs=0.5)
    assert given["tests"][0] == pytest.approx(120 * 0.4 / 0.9, abs=0.5)
    assert given["bench"][0] == pytest.approx(120, abs=0.5)
    assert f"--out={out}" not in given["bench"][1] and str(out / "bench.csv") in given["bench"][1]
    assert "--offline" in given["bench"][1]
    text = (out / "summary.txt").read_text()
    assert "FAIL    tests: exit code 1" in text and "graph-pool probe: new pattern" in text
    assert text.rstrip().endswith("gpu-check: FAIL (see above)")


def gpu_row(mode, precision):
    return {
        "dataset": "fashion-mnist",
        "loss": "standalone",
        "mode": mode,
        "precision": precision,
        "train_images_per_s": "41000.5",
        "s_per_epoch": "1.5",
        "peak_gpu_mem_mb": "812.0",
    }


# ---- 5. no network: bounded fetches and an offline switch ---------------------------------
def test_offline_a_missing_file_fails_at_once_naming_the_command_that_brings_it(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("SUITE_OFFLINE", "1")
    called = []
    sources = [Source("net", lambda *a: called.append(1), network=True)]
    with pytest.raises(DataError) as e:
        ensure("mnist", tmp_path, sources=sources)
    assert called == []  # no network source was tried
    message = str(e.value)
    assert "train-images-idx3-ubyte: missing" in message and "\n" not in message
    assert "data pack mnist --to DIR" in message and "data fetch mnist --from DIR" in message


def test_the_offline_flag_reaches_every_command_that_may_fetch(monkeypatch):
    from experiments import data, grid, train

    parsers = [data.build_parser(), train.build_parser(), grid.build_parser(), bench.build_parser()]
    assert all("--offline" in p._option_string_actions for p in parsers)
    monkeypatch.setenv("SUITE_OFFLINE", "0")
    assert data.build_parser().parse_args(["check", "--offline"]).offline
    assert os.environ["SUITE_OFFLINE"] == "1"  # and so for every process this one starts


def test_network_sources_share_one_time_limit(tmp_path):
    seen = []

    def slow(spec, root, seconds):
        seen.append(round(seconds, 1))
        time.sleep(seconds)
        return False

    sources = [Source("first", slow, network=True), Source("second", slow, network=True)]
    with pytest.raises(DataError):
        ensure("mnist", tmp_path, sources=sources, limit_s=1.0, log=lambda *_: None)
    assert seen == [1.0]  # the second found the limit spent and was not tried


def test_a_fetch_process_is_killed_at_its_limit(tmp_path):
    marker = tmp_path / "finished"
    assert (
        run_limited(["sh", "-c", f"sleep 30; touch {marker}"], 0.5) is None
    )  # None: stopped at its limit
    assert not marker.exists()


def test_the_data_root_variable_has_the_suite_prefix_and_the_old_name_warns(monkeypatch):
    monkeypatch.delenv("SUITE_DATA", raising=False)
    monkeypatch.setenv("CENTERLOSS_DATA", "/old")
    with pytest.warns(FutureWarning, match="SUITE_DATA"):
        assert default_data_root() == Path("/old")
    monkeypatch.setenv("SUITE_DATA", "/new")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert default_data_root() == Path("/new")


# ---- 9. ./suite uses a Python that has the requirements ------------------------------------
def test_the_suite_wrapper_uses_a_python_that_has_the_requirements(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "$@"\n'
    )  # has everything, as on a GPU machine
    (bin_dir / "python3").chmod(0o755)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in (
        "suite",
        "supported.txt",
        "requirements.txt",
        "experiments",
        "losses",
        "models",
        "eval",
        "centersuite",
    ):
        subprocess.run(["cp", "-r", str(REPO / name), str(checkout / name)], check=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PIP_NO_INDEX": "1"}
    env.pop("SUITE_PYTHON", None)
    done = subprocess.run(
        ["bash", "suite", "data", "check", "synthetic"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert "synthetic: ok" in done.stdout and not (checkout / ".venv").exists()
    env["SUITE_PYTHON"] = "/bin/false"
    refused = subprocess.run(
        ["bash", "suite", "data", "check"], cwd=checkout, env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "SUITE_PYTHON=/bin/false lacks" in refused.stderr


def test_the_supported_range_is_stated_once_and_the_pins_are_inside_it():
    from experiments import check_env

    ranges = dict(check_env.requirements(tests=True))
    assert ranges["torch"] == (2, 11) and ranges["python"] == (3, 11, 4)
    pins = dict(
        line.split("==")
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert check_env.version_tuple(pins["torch"]) >= ranges["torch"]
    assert check_env.version_tuple(pins["torchvision"]) >= ranges["torchvision"]
