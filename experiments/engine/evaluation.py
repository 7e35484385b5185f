"""The trainer's evaluation (a part of ``Trainer``, experiments/engine/trainer.py): features of a split in
large no-grad batches, precise BatchNorm statistics, the accuracies by every rule, and the final evaluation
of the reported model (test accuracies, embedding metrics, out-of-distribution detection)."""

from __future__ import annotations

import torch

from centersuite.eval.embedding import embedding_metrics
from centersuite.eval.metrics import embed, evaluate_embeddings
from centersuite.eval.ood import detection_metrics, ood_scores
from experiments.engine.augment import Augment
from experiments.engine.io import atomic_torch_save


class Evaluation:
    """What ``Trainer`` evaluates with; it reads the trainer's model, loss, data and indices."""

    def embed(self, images: torch.Tensor):
        return embed(
            self.model,
            images,
            autocast_dtype=self.autocast_dtype,
            memory_format=self.memory_format,
            forward=self.forward,
        )

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)`` of ``test``, ``val``, or ``train_eval``: the fixed training subset, unaugmented."""
        if name == "train_eval":
            return self.data.train_images[self.train_eval_index], self.data.train_labels[
                self.train_eval_index
            ]
        return self.data.split(name)

    def embed_split(self, split: str, train_index: torch.Tensor):
        """``(train subset features, labels, split features, split logits, split labels)``; the train
        subset's features are None when ``train_index`` is empty."""
        train_features = (
            self.embed(self.data.train_images[train_index])[0] if len(train_index) else None
        )
        images, labels = self.split(split)
        features, logits = self.embed(images)
        return train_features, self.data.train_labels[train_index], features, logits, labels

    @torch.no_grad()
    def recompute_bn_statistics(self) -> None:
        """Precise BN: every BatchNorm's running statistics recomputed on the ``precise_bn`` fixed training
        images, unaugmented, as a cumulative average over batches (momentum None), the weights unchanged."""
        norms = [
            m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        if not norms or not len(self.bn_index):
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        training = self.model.training
        self.model.train()
        for index in self.bn_index.split(self.cfg.batch_size):
            x = Augment(self.cfg.dataset, "none")(self.data.train_images[index]).contiguous(
                memory_format=self.memory_format
            )
            with torch.autocast(
                self.device.type,
                dtype=self.autocast_dtype or torch.bfloat16,
                enabled=self.autocast_dtype is not None,
                cache_enabled=False,
            ):
                (self.forward or self.model)(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.model.train(training)

    def evaluate(self, split: str, final: bool = False) -> tuple[dict[str, torch.Tensor], tuple]:
        """Accuracies on ``split`` by every rule; the train subset embedded is ``eval_train_size`` images
        per epoch, the whole TRAIN_EVAL_SIZE subset for the final evaluation."""
        self.recompute_bn_statistics()
        index = (
            self.train_eval_index if final else self.train_eval_index[: self.cfg.eval_train_size]
        )
        embeddings = self.embed_split(split, index)
        accs = evaluate_embeddings(self.loss, *embeddings)
        return {
            f"{split}_acc_{k}" if k != "headline" else f"{split}_acc": v for k, v in accs.items()
        }, embeddings

    def final_evaluation(self) -> dict[str, float]:
        """Test accuracies and embedding metrics of the reported model: the last
        epoch's (reference and last protocols) or the selected epoch's (fair protocol)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state["model"])
            self.loss.load_state_dict(self.best_state["loss"])
        test_metrics, embeddings = self.evaluate("test", final=True)
        train_features, train_labels, test_features, test_logits, test_labels = embeddings
        extra = embedding_metrics(
            train_features, train_labels, test_features, test_labels, self.loss.num_classes
        )
        if len(self.data.ood_images):
            ood_features, ood_logits = self.embed(self.data.ood_images)
            scores_in = ood_scores(
                self.loss, train_features, train_labels, test_features, test_logits
            )
            scores_out = ood_scores(
                self.loss, train_features, train_labels, ood_features, ood_logits
            )
            for score in scores_in:
                for metric, value in detection_metrics(scores_in[score], scores_out[score]).items():
                    extra[f"ood_{score}_{metric}"] = value
        else:
            self.log(
                f"run {self.cfg.run_id}: the out-of-distribution set ({self.data.ood_name}) is empty: no "
                "detection metric"
            )
        atomic_torch_save(
            self.run_dir / "features" / "final.pt",
            self.feature_frame(embeddings, test_metrics["test_acc"].item()),
        )
        return {k: v.item() for k, v in {**test_metrics, **extra}.items()}
