"""Equal-budget tuning: ``study`` (one Optuna study per loss, its workers, the reproductions of the
winners, the summary) and ``trial`` (one trial: trained and selected on a validation split, with no test
split at all). The command is experiments/tune.py."""
