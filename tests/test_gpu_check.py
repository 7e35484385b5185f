"""gpu-check: its summary from a test report and bench rows, and its no-CUDA path."""

import torch

from experiments import gpu_check

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.test_speed" name="test_graph_step_gives_the_eager_losses[fp32-0.001]" time="1.0"/>
<testcase classname="tests.test_speed" name="test_graph_and_eager_runs_reach_the_same_accuracy" time="9.0">
<failure message="assert 0.2 &lt; 0.05">trace</failure></testcase>
<testcase classname="tests.test_speed" name="test_packed" time="0.1"><skipped message="needs a GPU"/></testcase>
</testsuite></testsuites>"""


def bench_row(mode, precision, rate, finite="True"):
    return {
        "dataset": "fashion-mnist",
        "loss": "standalone",
        "mode": mode,
        "precision": precision,
        "train_images_per_s": rate,
        "s_per_epoch": "1.5",
        "peak_gpu_mem_mb": "812.0",
        "finite": finite,
    }


def test_the_summary_names_every_check_and_figure(tmp_path):
    (tmp_path / "junit.xml").write_text(JUNIT)
    outcomes = gpu_check.test_outcomes(tmp_path / "junit.xml")
    assert outcomes == [
        ("test_graph_step_gives_the_eager_losses[fp32-0.001]", "passed"),
        ("test_graph_and_eager_runs_reach_the_same_accuracy", "failed"),
        ("test_packed", "skipped"),
    ]
    rows = [
        bench_row("graph", "fp32", "41000.5"),
        bench_row("packed x4 (graph)", "fp32", "120000.0"),
    ]
    steps = {
        "probe": (True, "probe: exit code 0"),
        "tests": (False, "tests: exit code 1"),
        "bench": (True, "bench: exit code 0"),
    }
    text, ok = gpu_check.summary(steps, outcomes, rows, "NVIDIA H100")
    assert not ok
    assert "  PASS    probe: exit code 0" in text and "  FAIL    tests: exit code 1" in text
    assert "  PASS    test_graph_step_gives_the_eager_losses[fp32-0.001]" in text
    assert "  FAILED  test_graph_and_eager_runs_reach_the_same_accuracy" in text
    assert "  SKIPPED test_packed" in text
    assert "graph                    fp32    41000.5      1.5    812.0" in text
    assert text.endswith("gpu-check: FAIL (see above)")
    passing = {k: (True, v[1]) for k, v in steps.items()}
    text, ok = gpu_check.summary(passing, outcomes[:1], rows, "NVIDIA H100")
    assert ok and text.endswith("gpu-check: PASS (all checks passed)")
    assert not gpu_check.summary(steps, outcomes[:1], rows, "x")[1]  # a step's exit code counts
    assert not gpu_check.summary(
        passing, outcomes[:1], [bench_row("eager", "bf16", "1", finite="False")], "x"
    )[1]
    assert not gpu_check.summary(passing, [], rows, "x")[1]  # no test ran: not a pass
    assert not gpu_check.summary(passing, outcomes[:1], [], "x")[1]  # no figure: not a pass


def test_without_cuda_it_says_so_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("gpu-check: no CUDA device here")
