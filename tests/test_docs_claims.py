"""What docs/ says about the field's competitors is true of the commands it names: a list of losses is called
the competitors only for the ones that are (pytorch-metric-learning's, centersuite/losses/pml.py), and which
command trains all of them is named."""

import re
from pathlib import Path

from centersuite.losses import LOSSES

DOCS = Path(__file__).resolve().parent.parent / "docs"
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}


def competitors() -> set[str]:
    return {name for name, cls in LOSSES.items() if cls.__module__.endswith(".pml")}


def test_a_documented_list_of_losses_counts_the_competitors_it_holds():
    text = " ".join((DOCS / "running.md").read_text().split())  # the lines joined
    claims = re.findall(r"`--losses ([a-z\- ]+)` \(([^)]*competitors[^)]*)\)", text)
    assert claims, "docs/running.md no longer says which runs hold competitors"
    for losses, said in claims:
        named = set(losses.split())
        held = named & competitors()
        count = re.search(r"(\w+) of the field's competitors", said)
        assert count and NUMBERS[count.group(1)] == len(held) < len(competitors()), (losses, said)
        others = named - held  # named as what they are: the family's own
        assert all(f"`{loss}`" in said for loss in others), (losses, said)
        assert "./suite grid --preset family" in said  # the command that trains every competitor
