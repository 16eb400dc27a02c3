"""The discipline every trained protocol shares: one model per learning rate trained on train with the val
metric every epoch; the best lr (on val only) retrained on train+val for its best epoch count; that model is
the one tested. Without refit, the val-best model itself is kept.

A refit can diverge where the selected run did not (a high lr whose early epochs collapsed, stopped at a short best
epoch): given `score` (the val metric of a model), the refit is scored on val — data it trained on, so a sound refit
scores at least about as well as the selected run — and one scoring under half the selected run's val metric is
taken for collapsed: the selected run's own model (trained on train) is tested instead, and `fallback` says so."""

from __future__ import annotations

import math
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
    fallback: str | None = None  # why the selected run's model was tested instead of a collapsed refit

    @property
    def lr(self) -> float:
        return self.candidates[self.chosen]["params"]["lr"]

    @property
    def best_epoch(self) -> int:
        return self.candidates[self.chosen]["best_epoch"]


def select_lr(lrs: list[float], build: Callable[[], nn.Module],
              fit: Callable[[nn.Module, float, bool, int | None], TrainResult], refit: bool,
              after_selection: Callable[[nn.Module], Any] = lambda model: None,
              score: Callable[[nn.Module], float] | None = None) -> Selection:
    """`fit(model, lr, validate, stop_after)` trains (with per-epoch validation when `validate`, keeping the
    best weights); `after_selection(model)` is called on each lr's val-best model (e.g. to keep its val scores);
    `score(model)`: its val metric, to catch a refit that collapsed."""
    candidates, payloads, seconds, kept = [], [], 0.0, None
    for lr in lrs:
        model = build()
        result = fit(model, lr, True, None)
        seconds += result.seconds
        candidates.append({"params": {"lr": lr}, "val": result.best_value, "best_epoch": result.best_epoch,
                           "history": result.history})
        payloads.append(after_selection(model))
        if (not refit or score is not None) and pick_best([c["val"] for c in candidates]) == len(candidates) - 1:
            kept = model  # the val-best so far (with a refit: the fallback should the refit collapse)
    chosen = pick_best([c["val"] for c in candidates])
    if not refit:
        return Selection(candidates, chosen, kept, seconds, payloads)
    selected_run, kept = kept, build()
    history = candidates[chosen]["history"]
    scales = [record.get("lr_scale") for record in history]
    refit_epochs = Refit(candidates[chosen]["best_epoch"], scales if all(s is not None for s in scales) else None)
    seconds += fit(kept, lrs[chosen], False, refit_epochs).seconds
    fallback = None
    if score is not None:
        refit_value, selected_value = score(kept), candidates[chosen]["val"]
        candidates[chosen]["refit_val"] = refit_value
        if collapsed(refit_value, selected_value):
            fallback = (f"the train+val refit (lr {lrs[chosen]:g}, {refit_epochs} epochs) scored {refit_value:.4f} "
                        f"on val, which it trained on, where the selected run scored {selected_value:.4f}: the refit "
                        f"collapsed; tested the selected run's model (trained on train, epoch "
                        f"{candidates[chosen]['best_epoch']})")
            kept = selected_run
    return Selection(candidates, chosen, kept, seconds, payloads, fallback)


def collapsed(refit_value: float, selected_value: float) -> bool:
    """A refit scoring under half the selected run on val (or nothing at all where the run scored)."""
    if not math.isfinite(selected_value) or selected_value <= 0:
        return False
    return not math.isfinite(refit_value) or refit_value < 0.5 * selected_value
