"""centersuite: the center-loss family, its competitors' adapters, the models and the evaluation of the
center-loss comparison suite, as a library (docs/library.md).

- ``centersuite.losses``: every loss called as ``loss(embeddings, labels)``, its centers or proxies its
  parameters; the center rules (``centersuite.losses.center_rules``);
- ``centersuite.models``: the reference pre-activation ResNet and LeNet++;
- ``centersuite.eval``: nearest center, class mean, argmax, 1-NN, MAP@R and the OOD scores on plain tensors.

Needs torch only (pytorch-metric-learning for the adapted competitors: ``pip install
'/path/to/checkout[pml]'``).
"""

__version__ = "0.4.0"
