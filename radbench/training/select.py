"""The discipline every trained protocol shares: one model per learning rate trained on train with the val
metric every epoch; the best lr (on val only) retrained on train+val for its best epoch count; that model is
the one tested. Without refit, the val-best model itself is kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from radbench.protocols.base import pick_best
from radbench.training.loop import Refit, TrainResult


@dataclass
class Selection:
    candidates: list[dict]  # per lr: params, val, best_epoch, history
    chosen: int
    model: nn.Module  # the model to test
    seconds: float  # training time, selection and refit together
    payloads: list[Any]  # what `after_selection` returned for each lr's val-best model

    @property
    def lr(self) -> float:
        return self.candidates[self.chosen]["params"]["lr"]

    @property
    def best_epoch(self) -> int:
        return self.candidates[self.chosen]["best_epoch"]


def select_lr(lrs: list[float], build: Callable[[], nn.Module],
              fit: Callable[[nn.Module, float, bool, int | None], TrainResult], refit: bool,
              after_selection: Callable[[nn.Module], Any] = lambda model: None) -> Selection:
    """`fit(model, lr, validate, stop_after)` trains (with per-epoch validation when `validate`, keeping the
    best weights); `after_selection(model)` is called on each lr's val-best model (e.g. to keep its val scores)."""
    candidates, payloads, seconds, kept = [], [], 0.0, None
    for lr in lrs:
        model = build()
        result = fit(model, lr, True, None)
        seconds += result.seconds
        candidates.append({"params": {"lr": lr}, "val": result.best_value, "best_epoch": result.best_epoch,
                           "history": result.history})
        payloads.append(after_selection(model))
        if not refit and pick_best([c["val"] for c in candidates]) == len(candidates) - 1:
            kept = model
    chosen = pick_best([c["val"] for c in candidates])
    if refit:
        kept = build()
        history = candidates[chosen]["history"]
        scales = [record.get("lr_scale") for record in history]
        refit_epochs = Refit(candidates[chosen]["best_epoch"], scales if all(s is not None for s in scales) else None)
        seconds += fit(kept, lrs[chosen], False, refit_epochs).seconds
    return Selection(candidates, chosen, kept, seconds, payloads)
