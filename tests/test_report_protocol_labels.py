"""A table names the epoch it reports by the run's protocol (experiments/engine/protocol.py): a run of
protocol `fair` is tested once, on the epoch its validation split selected, which is neither a best epoch
chosen on the test split nor, in general, its last epoch."""

from experiments.engine.protocol import protocol_of
from experiments.report import tables
from tests.test_report import ledger, ledger_row


def cells(table: str, departs: str) -> list[str]:
    """The cells of the accuracy table's row (table.md's embedding table, further down, has one too)."""
    line = next(line for line in table.splitlines() if f"| {departs} |" in line)
    return [c.strip() for c in line.strip("|").split("|")]


def test_a_fair_run_is_labelled_as_the_epoch_its_validation_split_selected(tmp_path):
    rows = [
        # a fair run whose validation split selected epoch 2 of 3: one test figure, best and final alike
        ledger_row("cent", protocol="fair", epochs=3, best=0.7060, final=0.7060),
        ledger_row("xent", epochs=3, best=0.9000, final=0.8000),  # reference: best chosen on test
        ledger_row("standalone", protocol="last", epochs=3, best="", final=0.6000),
    ]
    df = ledger(tmp_path, rows)
    label = protocol_of("fair").label
    assert "validation" in label
    for table, best, last in ((tables.full_table(df, tmp_path), 5, 6),):
        fair = cells(table, "epochs=3, protocol=fair")
        assert fair[best] == "—"  # no epoch of a fair run is chosen on the test split
        assert fair[last] == f"0.7060 ({label})"
        reference = cells(table, "epochs=3")
        assert reference[best : last + 1] == ["0.9000", "0.8000"]  # the reference's, unchanged
        last_protocol = cells(table, "epochs=3, protocol=last")  # reports its last epoch
        assert last_protocol[best : last + 1] == ["—", "0.6000"]
    assert "both columns are that one figure" not in tables.full_table(df, tmp_path)
