"""The README's main results, the CPU study: its table by hand, the pairing rule (same code, same device),
the rows it leaves out, and what happens to its section and pictures when the code moves on."""

import pandas as pd
import pytest
import torch

from experiments import report
from experiments.engine.io import atomic_write_csv
from experiments.ledger.rows import EPOCH_COLUMNS, RUN_COLUMNS
from experiments.report import Outputs, study
from experiments.report.markers import MARKERS
from tests.conftest import says
from tests.test_composites import frame
from tests.test_report import T975_DF2, ledger, ledger_row

STUDY = dict(epochs=10, train_size=20000, lr_patience=2, eval_train_size=2000)
CPU = "cpu (1 thread, AVX512, oneDNN avx512_core_bf16)"


def study_row(loss, seed, final, dataset="mnist", feat_dim=2, **extra):
    row = ledger_row(
        loss, seed=seed, final=final, best=final, dataset=dataset, feat_dim=feat_dim, **STUDY
    )
    row.update(device=CPU, code_version="0123456789ab", wall_s=600)
    row.update(extra)
    return row


def mnist_d2(finals: dict[str, list[float]], **extra) -> list[dict]:
    return [
        study_row(loss, seed, f, **extra)
        for loss, values in finals.items()
        for seed, f in enumerate(values)
    ]


FINALS = {
    "xent": [0.980, 0.982, 0.984],
    "cent": [0.981, 0.984, 0.985],
    "standalone": [0.984, 0.984, 0.990],
}


def test_the_study_table_pairs_and_gap_by_hand(tmp_path):
    rows = mnist_d2(FINALS)
    for r in rows:
        r["final_train_acc"] = 0.99
    epochs = pd.DataFrame(
        [
            {
                "run_id": r["run_id"],
                "epoch": e,
                "test_acc": r["final_test_acc"] - (0.003 if e == 9 else 0),
            }
            for r in rows
            for e in (9, 10)
        ]
    )
    text = study.study_markdown(ledger(tmp_path, rows), epochs)
    half = T975_DF2 * 0.002 / 3**0.5  # xent: 0.980, 0.982, 0.984
    assert f"| mnist | 2 | 0.9820 ± {half:.4f} (3) [0.991] |" in text
    assert (
        "| fashion-mnist | 128 | — (no run) [0.926] | — (no run) [0.932] | — (no run) [0.922] | — |"
        in text
    )
    assert "| 0.30 mean, 0.30 max |" in text  # every run moved 0.3 points over its last two epochs
    # standalone - xent = 0.4, 0.2, 0.6 points: mean 0.4, sd 0.2
    assert f"| mnist | 2 | standalone | +0.40 ± {T975_DF2 * 0.2 / 3**0.5:.2f} | 3 |" in text
    assert "**9 of the study's 36 runs are recorded**" in text and "--preset cpu-study" in text
    gap = T975_DF2 * 0.2 / 3**0.5  # xent's gaps 1.0, 0.8, 0.6 points
    assert f"| mnist | 2 | 0.80 ± {gap:.2f} (3) |" in text
    assert "`epochs` 10 (reference: 100; training epochs)" in text
    assert "`train_size` 20,000 (reference: the whole split;" in text
    assert "1.5 h of training summed over the 9 runs recorded" in text and CPU in text


def test_a_pair_needs_one_device_and_one_code_and_dirty_rows_stay_out(tmp_path):
    rows = mnist_d2(FINALS)
    standalone = [r for r in rows if r["loss"] == "standalone"]
    standalone[1]["device"] = (
        "cpu (1 thread, AVX2, oneDNN avx2)"  # the same run on another processor
    )
    standalone[2]["code_version"] = "fedcba987654-dirty"  # uncommitted code: not shown at all
    text = study.study_markdown(ledger(tmp_path, rows), pd.DataFrame())
    assert "| mnist | 2 | standalone | +0.40 | 1 (1 removed: 1 other device) | — | — |" in text
    says(text, "1 run of the study", "`-dirty`", "left out")
    assert "0.9840 ± 0.0000 (2) [0.994]" in text  # the two clean standalone runs
    one_seed = study.study_markdown(
        ledger(tmp_path, mnist_d2({"xent": [0.98], "standalone": [0.99]})), pd.DataFrame()
    )
    assert "No comparison has two pairs yet: no interval." in one_seed
    assert "No interval excludes 0." not in one_seed


def test_a_row_of_the_old_spelling_1_threads_is_the_same_device(tmp_path):
    """Rows recorded before the label said "1 thread" read "cpu (1 threads, ...)": the same device, shown
    and paired as one (the ledger itself is not rewritten)."""
    rows = mnist_d2({"xent": FINALS["xent"], "standalone": FINALS["standalone"]})
    for r in rows[:3]:
        r["device"] = CPU.replace("1 thread,", "1 threads,")
    df = ledger(tmp_path, rows)
    assert set(df["device"]) == {CPU}
    assert "| mnist | 2 | standalone | +0.40 ± " in study.study_markdown(df, pd.DataFrame())


def test_runs_of_other_code_pair_only_by_one_commit(tmp_path):
    rows = mnist_d2({"xent": FINALS["xent"], "cent": FINALS["cent"]})
    for r in rows:
        if r["loss"] == "cent":
            r["code_fingerprint"] = "0ld0ld0ld0ld"  # recorded by older code: stale
    stale = ledger(tmp_path, rows)
    assert "| mnist | 2 | cent | +0.13 ± " in study.study_markdown(
        stale, pd.DataFrame()
    )  # one commit
    for r in rows:
        if r["loss"] == "cent":
            r["code_version"] = "999999999999"
    text = study.study_markdown(ledger(tmp_path, rows), pd.DataFrame())
    assert "| mnist | 2 | cent | — | 0 (3 removed: 3 other code) |" in text


def readme_with_markers(path):
    path.write_text("# r\n\n" + "\n\n".join(f"{a}\n{b}" for a, b in MARKERS.values()) + "\n")
    return path


@pytest.mark.slow
def test_a_published_row_made_stale_keeps_its_pictures_and_gets_the_notice(tmp_path, monkeypatch):
    results, imgs = tmp_path / "results", tmp_path / "imgs"
    rows = mnist_d2({loss: [0.9] for loss in FINALS})
    atomic_write_csv(results / "runs.csv", rows, RUN_COLUMNS)
    atomic_write_csv(
        results / "epochs.csv",
        [
            {
                "run_id": r["run_id"],
                "group_id": r["group_id"],
                "epoch": e,
                "code_fingerprint": r["code_fingerprint"],
                "test_acc": 0.1 * e,
            }
            for r in rows
            for e in range(1, 11)
        ],
        EPOCH_COLUMNS,
    )
    (results / "frames").mkdir()
    for k, r in enumerate(rows):
        data = {"frames": [frame(e, k, r["loss"] != "xent") for e in (0.5, 1, 2)]}
        torch.save(data, results / "frames" / f"{r['run_id']}.pt")
    readme = readme_with_markers(tmp_path / "README.md")
    report.build(Outputs(results, imgs, readme), tmp_path / "no-runs")
    before = readme.read_text()
    gif = imgs / "composite" / "mnist-feat=2.gif"
    assert (
        gif.exists()
        and "composite/mnist-feat=2.gif" in before
        and "Recorded by older code" not in before
    )
    assert "Trained by `./suite grid --preset cpu-study`" in before

    import experiments.ledger.fingerprint as fingerprint

    real = fingerprint.code_fingerprint
    monkeypatch.setattr(
        fingerprint,
        "code_fingerprint",
        lambda loss, model: "n3wn3wn3wn3w" if loss == "standalone" else real(loss, model),
    )
    for module in ("experiments.report.rows", "experiments.report.study"):
        monkeypatch.setattr(f"{module}.code_fingerprint", fingerprint.code_fingerprint)
    report.build(Outputs(results, imgs, readme), tmp_path / "no-runs")
    after = readme.read_text()
    assert gif.exists() and "composite/mnist-feat=2.gif" in after  # the picture stays, linked
    figures = after.split(MARKERS["figures"][0])[1]
    results_section = after.split(MARKERS["results"][0])[1].split(MARKERS["results"][1])[0]
    for section in (figures, results_section):
        assert "**Recorded by older code.** 1 of the runs " in section
        assert "standalone (resnet): fingerprint " in section and "now n3wn3wn3wn3w" in section
        assert "`./suite grid --retrain-stale`" in section
    assert results_section.index("Recorded by older code") < results_section.index(
        "**Test accuracy, last epoch**"
    )


def test_compare_refuses_a_pair_of_two_devices_says_why_and_exits_nonzero(tmp_path, capsys):
    """The command printed its refusal and exited 0, as if it had compared."""
    from experiments.report import command

    rows = [ledger_row("xent", seed=0), ledger_row("standalone", seed=0)]
    rows[1]["device"] = "cpu (1 thread, AVX2, oneDNN avx2)"
    ledger(tmp_path, rows)
    code = command.main(["--results", str(tmp_path), "--compare", "loss=standalone", "loss=xent"])
    err = capsys.readouterr().err
    assert code == 2
    says(err, "pairs: 0", "1 other device", "no pair", "1 seed recorded on another device")
