"""Linear probe: every (feature type x learning rate) head trained at once, in one pass over cached features.

As in DINOv2's linear eval: SGD with momentum 0.9, cosine schedule, heads initialised N(0, 0.01), each head's
loss averaged over its batch. Heads share no parameters, so they sit side by side in one matrix over the union of
the feature types' columns and train with closed-form gradients (softmax/sigmoid minus target): two matrix
products per step for the whole grid, no autograd. Multi-label heads use per-class sigmoid/BCE with missing
labels masked out. The best head on val is retrained on train+val and tested once."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from radbench.data.base import Task
from radbench.device import SMALL_WORK, maths_threads
from radbench.protocols.base import (
    PROTOCOLS,
    ProtocolConfigBase,
    ProtocolInput,
    ProtocolResult,
    ProtocolSpec,
    finish,
    pick_best,
)
from radbench.schema import PositiveFloat

if TYPE_CHECKING:
    import torch

DINOV2_LRS = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1]


class LinearConfig(ProtocolConfigBase):
    epochs: int = Field(default=10, ge=1)
    lr: list[PositiveFloat] = Field(default=DINOV2_LRS, min_length=1)
    batch_size: int = Field(default=128, ge=1)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    normalize: Literal["none", "standard"] = "none"  # standard: z-score with the fitting set's statistics


class Standardizer:
    def __init__(self, enabled: bool, reference: torch.Tensor):
        self.enabled = enabled
        if enabled:
            self.mean = reference.mean(0, keepdim=True)
            self.std = reference.std(0, keepdim=True).clamp_min(1e-6)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.enabled else x


class LinearHeads:
    """One matrix for every head: T feature types x L learning rates x C classes.

    The input is the union of the feature types' columns (they overlap: cls is part of cls+mean and last4);
    head (t, l) reads only type t's rows of its weight columns, enforced by a fixed 0/1 mask on the gradient,
    so each head is exactly a linear model on its own feature type. Momentum SGD with per-head learning rates,
    as torch.optim.SGD would do for each head separately."""

    def __init__(self, rows: list[np.ndarray], width: int, lrs: list[float], num_classes: int, momentum: float,
                 weight_decay: float, generator: torch.Generator, device: torch.device):
        import torch

        self.rows = [torch.as_tensor(r, dtype=torch.long) for r in rows]  # type t's positions in the input
        self.num_types, self.num_heads, self.num_classes = len(rows), len(lrs), num_classes
        heads_width = self.num_heads * num_classes
        self.weight = torch.zeros(width, self.num_types * heads_width)
        self.mask = torch.zeros_like(self.weight)
        for t, r in enumerate(self.rows):
            for head in range(self.num_heads):  # one draw per head: its init does not depend on the others
                start = t * heads_width + head * num_classes
                init = torch.randn(len(r), num_classes, generator=generator) * 0.01
                self.weight[r, start:start + num_classes] = init
            self.mask[r, t * heads_width:(t + 1) * heads_width] = 1.0
        self.weight, self.mask = self.weight.to(device), self.mask.to(device)
        self.bias = torch.zeros(self.weight.shape[1], device=device)
        lr_columns = torch.tensor(lrs, dtype=torch.float32).repeat_interleave(num_classes).repeat(self.num_types)
        self.lr_columns = lr_columns.to(device)
        self.momentum, self.weight_decay = momentum, weight_decay
        self._velocity = [torch.zeros_like(self.weight), torch.zeros_like(self.bias)]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(T, L, B, C)."""
        import torch

        out = torch.addmm(self.bias, x, self.weight)
        return out.view(len(x), self.num_types, self.num_heads, self.num_classes).permute(1, 2, 0, 3)

    def head_weight(self, feature_index: int, head: int) -> torch.Tensor:
        """(D_t, C) weights of one head, rows in its feature type's column order."""
        start = (feature_index * self.num_heads + head) * self.num_classes
        return self.weight[self.rows[feature_index], start:start + self.num_classes]

    def head_bias(self, feature_index: int, head: int) -> torch.Tensor:
        start = (feature_index * self.num_heads + head) * self.num_classes
        return self.bias[start:start + self.num_classes]

    def step(self, task: Task, x: torch.Tensor, targets: torch.Tensor, schedule: float) -> None:
        grad = logit_gradient(task, self.logits(x), targets)  # (T, L, B, C)
        grad = grad.permute(2, 0, 1, 3).reshape(len(x), -1)  # (B, T*L*C)
        grad_weight = (x.T @ grad + self.weight_decay * self.weight) * self.mask
        scale = self.lr_columns * schedule
        for param, gradient, velocity in zip((self.weight, self.bias), (grad_weight, grad.sum(0)), self._velocity):
            velocity.mul_(self.momentum).add_(gradient)
            param.sub_(scale * velocity)


def logit_gradient(task: Task, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d(head's mean loss)/d(logits) for logits (L, B, C): softmax-CE averaged over the batch, or BCE averaged
    over the known (non-NaN) labels of the batch."""
    if task.single_label:
        return (logits.softmax(-1) - targets) / len(targets)
    known = ~targets.isnan()
    return (logits.sigmoid() - targets.nan_to_num(0.0)) * known / known.sum().clamp_min(1)


def head_loss(task: Task, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over heads of each head's mean loss (the objective `logit_gradient` differentiates)."""
    import torch.nn.functional as F

    flat = logits.reshape(-1, *logits.shape[-2:])
    if task.single_label:
        return sum(F.cross_entropy(head, targets.argmax(1)) for head in flat)
    known = ~targets.isnan()
    losses = F.binary_cross_entropy_with_logits(flat, targets.nan_to_num(0.0).expand_as(flat), reduction="none")
    return ((losses * known).sum(dim=(1, 2)) / known.sum().clamp_min(1)).sum()


def probabilities(task: Task, logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(-1) if task.single_label else logits.sigmoid()


def _inputs(inputs: ProtocolInput, feature_types: list[str], splits: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The union of the feature types' bundle columns, and each type's positions within it."""
    columns = [inputs.features.columns(f) for f in feature_types]
    used = np.unique(np.concatenate(columns))
    x = np.concatenate([inputs.features.bundle(s)[:, used] for s in splits])
    return x, [np.searchsorted(used, c) for c in columns]


def train_heads(inputs: ProtocolInput, cfg: LinearConfig, feature_types: list[str], lrs: list[float],
                splits: list[str], description: str, warn_spread: bool = False) -> tuple[LinearHeads, Standardizer]:
    """`warn_spread`: check the unscaled inputs for near-constant features (once per job, on the first fit)."""
    import torch

    device = inputs.device
    # separate streams for init and batch order: head i of a grid then trains exactly as it would alone
    init_generator = torch.Generator().manual_seed(inputs.seed)
    order_generator = torch.Generator().manual_seed(inputs.seed + 1_000_003)
    x, rows = _inputs(inputs, feature_types, splits)
    x = torch.from_numpy(x).to(device)
    if warn_spread and cfg.normalize == "none":
        warn_if_nearly_constant(inputs.reporter, x)
    targets = torch.from_numpy(np.concatenate([inputs.targets[s] for s in splits])).to(device)
    scaler = Standardizer(cfg.normalize == "standard", x)  # per column: the same for every type using it
    x = scaler(x)
    heads = LinearHeads(rows, x.shape[1], lrs, targets.shape[1], cfg.momentum, cfg.weight_decay, init_generator,
                        device)
    total = cfg.epochs * math.ceil(len(targets) / cfg.batch_size)
    step = 0
    small = x.shape[1] * heads.weight.shape[1] * min(cfg.batch_size, len(targets)) < SMALL_WORK
    with torch.no_grad(), maths_threads(1 if small and device.type == "cpu" else None), \
            inputs.reporter.task(description, cfg.epochs) as advance:
        for _ in range(cfg.epochs):
            order = torch.randperm(len(targets), generator=order_generator).to(device)
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start:start + cfg.batch_size]
                heads.step(inputs.task, x[batch], targets[batch], 0.5 * (1 + math.cos(math.pi * step / total)))
                step += 1
            advance(1)
    return heads, scaler


def predict(inputs: ProtocolInput, heads: LinearHeads, scaler: Standardizer, feature_types: list[str],
            split: str) -> np.ndarray:
    import torch

    x, _ = _inputs(inputs, feature_types, [split])
    with torch.no_grad():
        logits = heads.logits(scaler(torch.from_numpy(x).to(inputs.device)))
    return probabilities(inputs.task, logits).cpu().double().numpy()  # (T, L, N, C)


def warn_if_nearly_constant(reporter, x: torch.Tensor) -> None:
    """Unscaled SGD cannot use features that barely vary between images (random-init ViTs give such features):
    its heads end near chance while logreg, which standardises, does fine. Say so instead of failing quietly."""
    spread = float(x.std(0, correction=0).quantile(0.5))
    scale = float(x.abs().mean())
    if scale > 0 and spread < 1e-2 * scale:
        reporter.warn(f"linear: features barely vary between images (median per-column std {spread:.2g} vs "
                      f"mean |x| {scale:.2g}); unscaled SGD heads will sit near chance — set `normalize: standard`")


def run_linear(cfg: LinearConfig, inputs: ProtocolInput) -> ProtocolResult:
    feature_types, lrs = inputs.feature_types, list(cfg.lr)
    count = len(feature_types) * len(lrs)
    heads, scaler = train_heads(inputs, cfg, feature_types, lrs, ["train"], f"  linear: {count} heads, epochs",
                                 warn_spread=True)
    val_scores = predict(inputs, heads, scaler, feature_types, "val")
    candidates = []
    for t, feature_type in enumerate(feature_types):
        for l, lr in enumerate(lrs):
            value = inputs.selection_value(inputs.targets["val"], val_scores[t, l])
            candidates.append({"params": {"feature": feature_type, "lr": lr}, "val": value})
    # a tie (ranks unchanged by tiny steps) goes to the larger lr: a head that trained, not its initialisation
    chosen = pick_best([c["val"] for c in candidates], prefer=[c["params"]["lr"] for c in candidates])
    t, l = divmod(chosen, len(lrs))
    refit, refit_scaler = train_heads(inputs, cfg, [feature_types[t]], [lrs[l]], list(inputs.refit_splits),
                                      f"  linear: refit on {'+'.join(inputs.refit_splits)}, epochs")
    test_scores = predict(inputs, refit, refit_scaler, [feature_types[t]], "test")[0, 0]
    result = finish(inputs, candidates, chosen, val_scores[t, l], test_scores, {"heads": count})
    result.predict = lambda split: predict(inputs, refit, refit_scaler, [feature_types[t]], split)[0, 0]
    result.costs["trainable_params"] = float(len(inputs.features.columns(feature_types[t])) + 1) * test_scores.shape[1]
    return result


PROTOCOLS.add("linear", ProtocolSpec(
    "linear", LinearConfig, run_linear, "linear probe, all lr x feature heads in one pass, chosen on val"))
