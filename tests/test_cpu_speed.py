"""The CPU's fast paths give what the plain path gives: chunked evaluation, the compile fallback,
bf16 and channels_last, glibc's thresholds, the per-epoch train-subset size."""

import pytest
import torch

from centersuite.eval.metrics import embed
from centersuite.models import build_model
from experiments.datasets.specs import get_spec
from experiments.engine.compiled import CompiledForward
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.data import DeviceData
from experiments.engine.trainer import Trainer

CPU = torch.device("cpu")


def tiny(loss="cent", **kw):
    base = dict(
        dataset="synthetic",
        loss=loss,
        feat_dim=8,
        epochs=3,
        batch_size=64,
        lr=0.05,
        train_size=1024,
        test_size=500,
    )
    return RunConfig(**{**base, **kw})


@pytest.mark.slow
def test_chunked_evaluation_gives_the_features_of_one_big_batch():
    torch.manual_seed(0)
    model = build_model("resnet", 1, 10, 4, 28).eval()
    images = torch.randint(0, 256, (150, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        whole = model(images.float() / 255)
    for batch, fmt in (
        (64, torch.contiguous_format),
        (64, torch.channels_last),
        (150, torch.contiguous_format),
    ):
        features, logits = embed(
            model.to(memory_format=fmt), images, batch_size=batch, memory_format=fmt
        )
        assert features.shape == (150, 4) and logits.shape == (150, 10)
        assert torch.allclose(features, whole[0], atol=1e-4) and torch.allclose(
            logits, whole[1], atol=1e-4
        )
    # a static-shape forward sees the full buffer every time, the last partial chunk too
    shapes = []

    def forward(x):
        shapes.append(tuple(x.shape))
        return model(x)

    features, _ = embed(model, images, batch_size=64, forward=forward)
    assert shapes == [(64, 1, 28, 28)] * 3 and torch.allclose(features, whole[0], atol=1e-4)


def test_a_compiler_that_fails_leaves_the_run_eager_after_one_warning_line():
    model = build_model("resnet", 1, 10, 2, 28)
    lines = []

    def broken_compile(module, dynamic):
        def compiled(x):
            raise RuntimeError("InductorError: no C++ compiler\nlong trace")

        return compiled

    forward = CompiledForward(model, lines.append, compile_fn=broken_compile)
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(0)
    out = forward(x)[0]
    assert torch.equal(out, model(x)[0]) and torch.equal(forward(x)[0], out)
    assert lines == [
        "warning: torch.compile failed (InductorError: no C++ compiler); going on eagerly"
    ]


def test_compilation_is_asked_for_and_changes_the_layout(synthetic_data, tmp_path):
    eager = Trainer(tiny(), synthetic_data, tmp_path, RunContext(device=CPU, progress=False))
    assert eager.forward is None and eager.memory_format == torch.channels_last
    compiled = Trainer(
        tiny(), synthetic_data, tmp_path, RunContext(device=CPU, progress=False, compile=True)
    )
    assert (
        isinstance(compiled.forward, CompiledForward)
        and compiled.memory_format == torch.contiguous_format
    )


# bf16 is slow without native bf16 (AVX512-BF16, AMX): a small run, 3 epochs of 8 steps, in which xent reaches
# 1.0 on the synthetic set
SMALL = dict(loss="xent", train_size=256, test_size=200, batch_size=32)


@pytest.fixture(scope="module")
def small_data():
    return DeviceData(get_spec("synthetic"), "data", CPU, train_size=256, test_size=200)


@pytest.fixture(scope="module")
def fp32_eager(small_data, tmp_path_factory):
    return Trainer(
        tiny(**SMALL),
        small_data,
        tmp_path_factory.mktemp("base"),
        RunContext(device=CPU, progress=False, log=lambda *_: None),
    ).fit()


@pytest.mark.slow
@pytest.mark.xdist_group("cpu-variants")  # one worker: the fp32 eager run is trained once
@pytest.mark.parametrize("variant", [{"precision": "bf16"}, {"eval_train_size": 0}])
def test_each_cpu_variant_trains_to_what_fp32_eager_reaches(
    variant, small_data, fp32_eager, tmp_path
):
    base = fp32_eager
    other = Trainer(
        tiny(**SMALL, **variant),
        small_data,
        tmp_path / "other",
        RunContext(device=CPU, progress=False, log=lambda *_: None),
    ).fit()
    assert other["status"] == "finished" and base["final_test_acc"] > 0.9
    assert abs(other["final_test_acc"] - base["final_test_acc"]) < 0.05
    assert other["final_knn1_acc"] > 0.9  # the final evaluation embeds the train subset in any case


def test_without_a_per_epoch_train_subset_the_class_mean_accuracy_is_not_made_up(
    synthetic_data, tmp_path
):
    trainer = Trainer(
        tiny(eval_train_size=0, loss="xent"),
        synthetic_data,
        tmp_path,
        RunContext(device=CPU, progress=False),
    )
    metrics, embeddings = trainer.evaluate("test")
    assert embeddings[0] is None
    assert torch.isnan(metrics["test_acc_class_mean"]) and torch.isnan(metrics["test_acc_center"])
    assert torch.isfinite(metrics["test_acc"])


def test_the_glibc_thresholds_are_raised_once_and_a_libc_without_them_is_said(monkeypatch):
    """Keeping freed blocks in the heap removes an evaluation's page faults (measured by the bench's eval system
    seconds, not here: a count depends on the processor, the allocator and the load)."""
    from experiments.engine import cpu_memory

    calls = []

    class Libc:
        def __init__(self, answer):
            self.mallopt = lambda option, value: calls.append((option, value)) or answer

    try:
        for ok, expected in ((1, True), (0, False)):
            calls.clear()
            cpu_memory.keep_freed_memory.cache_clear()
            monkeypatch.setattr(cpu_memory.ctypes, "CDLL", lambda name, ok=ok: Libc(ok))
            monkeypatch.setattr(cpu_memory.sys, "platform", "linux")
            assert cpu_memory.keep_freed_memory() is expected
            assert cpu_memory.keep_freed_memory() is expected  # once: the second call answers
            assert len(calls) == (2 if ok else 1)
        assert calls == [(cpu_memory.M_MMAP_THRESHOLD, cpu_memory.MMAP_THRESHOLD_MAX)]
    finally:
        cpu_memory.keep_freed_memory.cache_clear()  # the real libc's answer next time, not the fake's


def test_the_per_epoch_train_subset_size_goes_through_the_ledger(tmp_path):
    from experiments.ledger.rows import failed_row, read_rows, record
    from experiments.report import config_of

    for cfg in (tiny(eval_train_size=0), tiny()):
        record(tmp_path, failed_row(cfg.to_dict(), cfg.run_id, "x", "cpu"), [])
    rows = read_rows(tmp_path / "runs.csv")
    assert [r["eval_train_size"] for r in rows] == ["0", "10000"]
    assert [config_of(r).run_id for r in rows] == [tiny(eval_train_size=0).run_id, tiny().run_id]
    older = {**rows[1], "eval_train_size": ""}  # a row recorded before the column existed
    assert config_of(older).run_id == tiny().run_id
