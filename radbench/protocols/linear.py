"""Linear probe: every (feature type x learning rate) head trained at once, in one pass over cached features.

As in DINOv2's linear eval: SGD with momentum 0.9, cosine schedule, heads initialised N(0, 0.01), summed loss.
Each head owns its parameters, so summing the losses gives each head exactly its own gradient; per-head
learning rates are applied by scaling gradients (exact for momentum SGD). Multi-label heads use per-class
sigmoid/BCE with missing labels masked out. The best head on val is retrained on train+val and tested once."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from radbench.data.base import Task
from radbench.protocols.base import PROTOCOLS, ProtocolConfigBase, ProtocolInput, ProtocolResult, ProtocolSpec, finish, pick_best

DINOV2_LRS = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1]


class LinearConfig(ProtocolConfigBase):
    epochs: int = Field(default=10, ge=1)
    lr: list[float] = Field(default=DINOV2_LRS, min_length=1)
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


class MultiHeadLinear(torch.nn.Module):
    """Heads for T feature types x L learning rates; forward gives logits (T, L, B, C)."""

    def __init__(self, dims: list[int], lrs: list[float], num_classes: int, weight_decay: float,
                 generator: torch.Generator):
        super().__init__()
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(len(lrs), d, num_classes, generator=generator) * 0.01) for d in dims]
        )
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(len(lrs), num_classes)) for _ in dims])
        self.register_buffer("lrs", torch.tensor(lrs, dtype=torch.float32))
        for weight, bias in zip(self.weights, self.biases):
            weight.register_hook(self._scaled(weight, weight_decay, 3))
            bias.register_hook(self._scaled(bias, 0.0, 2))

    def _scaled(self, param: torch.nn.Parameter, weight_decay: float, ndim: int):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            scale = self.lrs.view(-1, *([1] * (ndim - 1)))
            return (grad + weight_decay * param.detach()) * scale

        return hook

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([torch.einsum("bd,ldc->lbc", x, w) + b[:, None, :]
                            for x, w, b in zip(xs, self.weights, self.biases)])


def head_loss(task: Task, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over heads of each head's mean loss. logits (T, L, B, C); targets (B, C)."""
    heads = logits.shape[0] * logits.shape[1]
    flat = logits.reshape(heads, *logits.shape[2:])
    if task.single_label:
        labels = targets.argmax(1).repeat(heads)
        return F.cross_entropy(flat.reshape(-1, flat.shape[-1]), labels, reduction="sum") / len(targets)
    known = ~targets.isnan()
    expanded = targets.nan_to_num(0.0).expand_as(flat)
    losses = F.binary_cross_entropy_with_logits(flat, expanded, reduction="none") * known
    return (losses.sum(dim=(1, 2)) / known.sum().clamp_min(1)).sum()


def probabilities(task: Task, logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(-1) if task.single_label else logits.sigmoid()


def train_heads(inputs: ProtocolInput, cfg: LinearConfig, feature_types: list[str], lrs: list[float],
                splits: list[str], description: str) -> tuple[MultiHeadLinear, list[Standardizer]]:
    device = inputs.device
    # separate streams for init and batch order: head i of a grid then trains exactly as it would alone
    init_generator = torch.Generator().manual_seed(inputs.seed)
    order_generator = torch.Generator().manual_seed(inputs.seed + 1_000_003)
    xs = [torch.from_numpy(np.concatenate([inputs.features(f, s) for s in splits])).to(device) for f in feature_types]
    targets = torch.from_numpy(np.concatenate([inputs.targets[s] for s in splits])).to(device)
    scalers = [Standardizer(cfg.normalize == "standard", x) for x in xs]
    xs = [scale(x) for scale, x in zip(scalers, xs)]
    model = MultiHeadLinear([x.shape[1] for x in xs], lrs, targets.shape[1], cfg.weight_decay, init_generator)
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=cfg.momentum)  # real lrs live in the hooks
    steps_per_epoch = math.ceil(len(targets) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    with inputs.reporter.task(description, total) as advance:
        for _ in range(cfg.epochs):
            order = torch.randperm(len(targets), generator=order_generator).to(device)
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start:start + cfg.batch_size]
                loss = head_loss(inputs.task, model([x[batch] for x in xs]), targets[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                advance(1)
    return model, scalers


@torch.no_grad()
def predict(inputs: ProtocolInput, model: MultiHeadLinear, scalers: list[Standardizer], feature_types: list[str],
            split: str) -> np.ndarray:
    xs = [scale(torch.from_numpy(inputs.features(f, split)).to(inputs.device)) for f, scale in zip(feature_types, scalers)]
    return probabilities(inputs.task, model(xs)).cpu().double().numpy()  # (T, L, N, C)


def run_linear(cfg: LinearConfig, inputs: ProtocolInput) -> ProtocolResult:
    feature_types, lrs = inputs.feature_types, list(cfg.lr)
    heads = len(feature_types) * len(lrs)
    model, scalers = train_heads(inputs, cfg, feature_types, lrs, ["train"], f"  linear: {heads} heads")
    val_scores = predict(inputs, model, scalers, feature_types, "val")
    candidates = []
    for t, feature_type in enumerate(feature_types):
        for l, lr in enumerate(lrs):
            value = inputs.metrics(inputs.targets["val"], val_scores[t, l])[0][inputs.selection_metric]
            candidates.append({"params": {"feature": feature_type, "lr": lr}, "val": value})
    chosen = pick_best([c["val"] for c in candidates])
    t, l = divmod(chosen, len(lrs))
    refit, refit_scalers = train_heads(inputs, cfg, [feature_types[t]], [lrs[l]], ["train", "val"], "  linear: refit")
    test_scores = predict(inputs, refit, refit_scalers, [feature_types[t]], "test")[0, 0]
    return finish(inputs, candidates, chosen, val_scores[t, l], test_scores, {"heads": heads})


PROTOCOLS.add("linear", ProtocolSpec(
    "linear", LinearConfig, run_linear, "linear probe, all lr x feature heads in one pass, chosen on val"))
