"""How learnable centers (or proxies) are updated, for every loss that has them: one small object.

- ``joint`` (reference): centers are in the model's SGD optimizer (same momentum), at the model's lr times
  ``class_lr_scale`` (1: the reference; a loss of the field trains its proxies at the scale its source
  gives, ``losses/__init__.py``);
- ``separate`` (the widely used PyTorch port): centers have their own SGD optimizer (lr ``center_lr``, no
  momentum) and their gradient is multiplied by ``1 / loss.center_weight`` so the loss weight does not
  change the update;
- ``wen`` (Wen et al., ECCV 2016): no gradient reaches the centers; after each step
  ``c_j <- c_j - alpha * sum_{i: y_i=j} (c_j - x_i) / (1 + n_j)``.

No weight decay on centers in any rule. In a training loop::

    rule = build_center_rule("separate", loss, center_lr=0.5)
    optimizer = torch.optim.SGD(rule.model_param_groups(model, weight_decay=5e-4, lr=0.01), lr=0.01,
                                momentum=0.9)
    for images, labels in loader:
        embeddings, _ = model(images)  # the suite's models return (features, logits)
        optimizer.zero_grad(); rule.zero_grad()
        loss(embeddings, labels).backward()
        rule.before_step(); optimizer.step(); rule.after_step(embeddings.detach(), labels)

``scaler``: a ``torch.amp.GradScaler`` where one scales the loss (fp16): the separate rule unscales the
center gradient before the 1/weight rescale and steps its optimizer through the scaler (skipped, like the
model's, on an inf gradient); the caller updates the scaler once per step, after ``after_step``.
"""

from __future__ import annotations

import torch

from ..eval.metrics import class_counts
from . import CENTER_RULES


class CenterRule:
    """The joint rule's defaults; each other rule changes what it must. ``loss``: a loss module (its
    ``learnable_centers`` are what the rule updates: None, and every rule does nothing to them)."""

    trains_centers_with_model = True

    def __init__(self, loss, class_lr_scale: float = 1.0):
        self.loss = loss
        self.centers = loss.learnable_centers
        self.class_lr_scale = class_lr_scale

    def model_param_groups(self, model, weight_decay: float, lr: float | None = None) -> list[dict]:
        """The optimizer's parameter groups: the model's and the loss's other parameters with
        ``weight_decay``; the centers (joint rule) without weight decay, at ``lr * class_lr_scale`` when
        the scale is not 1 (``lr``: the optimizer's)."""
        others = [p for p in self.loss.parameters() if p is not self.centers]
        groups = [{"params": [*model.parameters(), *others], "weight_decay": weight_decay}]
        if self.centers is not None and self.trains_centers_with_model:
            group = {"params": [self.centers], "weight_decay": 0.0}
            if self.class_lr_scale != 1.0:
                if lr is None:
                    raise ValueError(
                        "a class lr scale other than 1 needs the optimizer's lr: "
                        "model_param_groups(model, weight_decay, lr=...)"
                    )
                group["lr"] = lr * self.class_lr_scale
            groups.append(group)
        return groups

    def zero_grad(self) -> None:
        pass

    def before_step(self, scaler=None) -> None:
        pass

    def after_step(self, features: torch.Tensor, labels: torch.Tensor, scaler=None) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class JointRule(CenterRule):
    pass


class SeparateRule(CenterRule):
    trains_centers_with_model = False

    def __init__(self, loss, lr: float):
        super().__init__(loss)
        self.optimizer = (
            torch.optim.SGD([self.centers], lr=lr) if self.centers is not None else None
        )

    def zero_grad(self) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def before_step(self, scaler=None) -> None:
        if self.optimizer is not None and self.centers.grad is not None:
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            self.centers.grad.mul_(1.0 / self.loss.center_weight)

    def after_step(self, features, labels, scaler=None) -> None:
        if self.optimizer is not None and scaler is not None:
            scaler.step(self.optimizer)
        elif self.optimizer is not None:
            self.optimizer.step()

    def state_dict(self) -> dict:
        return {} if self.optimizer is None else self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.optimizer is not None and state:
            self.optimizer.load_state_dict(state)


class WenRule(CenterRule):
    trains_centers_with_model = False

    def __init__(self, loss, alpha: float):
        super().__init__(loss)
        self.alpha = alpha
        if self.centers is not None:
            self.centers.requires_grad_(False)

    @torch.no_grad()
    def after_step(self, features, labels, scaler=None) -> None:
        if self.centers is None:
            return
        c = self.centers
        diff_sum = torch.zeros_like(c).index_add_(0, labels, c[labels] - features.float())
        counts = class_counts(labels, c.shape[0])[:, None]
        c.sub_(self.alpha * diff_sum / (1 + counts))


def rule_problem(rule: str, loss_name: str, loss) -> str | None:
    """Why ``rule`` does not fit the loss (None when it does): ``separate`` and ``wen`` replace the update of
    the pull-to-center term, so they would silently change a loss whose centers other terms move too; and
    ``separate`` divides the centers' gradient by the pull term's weight, which must then not be 0."""
    if rule == "joint" or loss.learnable_centers is None:
        return None
    if not loss.centers_only_pulled:
        return (
            f"--center-rule {rule} does not fit the loss {loss_name}: terms other than a pull to the centers "
            "move its centers, which that rule would replace; use --center-rule joint"
        )
    if rule == "separate" and not loss.center_weight:
        weight = (
            f"--{loss.pull_weight.replace('_', '-')} is 0"
            if loss.pull_weight
            else "it has no pull weight"
        )
        return (
            f"--center-rule separate divides the centers' gradient by the pull weight, and {weight} for "
            f"{loss_name}: give it a positive value, or use --center-rule joint"
        )
    return None


def build_center_rule(
    name: str, loss, center_lr: float = 0.5, center_alpha: float = 0.5, class_lr_scale: float = 1.0
) -> CenterRule:
    """The rule ``name`` (``joint``, ``separate``, ``wen``) for ``loss``; ValueError, in one line, for an
    unknown rule or one that does not fit the loss (``rule_problem``)."""
    if (
        name in CENTER_RULES
        and (problem := rule_problem(name, type(loss).__name__, loss)) is not None
    ):
        raise ValueError(problem)
    if name == "joint":
        return JointRule(loss, class_lr_scale)
    if name == "separate":
        return SeparateRule(loss, center_lr)
    if name == "wen":
        return WenRule(loss, center_alpha)
    raise ValueError(f"unknown center rule {name!r}; choose from {', '.join(CENTER_RULES)}")
