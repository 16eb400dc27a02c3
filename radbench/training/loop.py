"""The training loop for image models: AdamW (or Adam, SGD with momentum), warmup then cosine decay or a tenfold
drop whenever the val metric stops improving (plateau), bf16 autocast on CUDA, gradient clipping, val metric every
epoch with early stopping, best weights kept, costs measured."""

from __future__ import annotations

import copy
import math
import resource
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from radbench.data.base import ImageSource, Task
from radbench.data.transforms import Preprocess
from radbench.device import autocast
from radbench.progress import Reporter
from radbench.training.augment import sample_seed


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    head_lr: float
    weight_decay: float
    layer_decay: float
    warmup_epochs: float
    grad_clip: float | None
    patience: int | None
    device: torch.device
    precision: str
    num_workers: int
    seed: int
    optimizer: str = "adamw"  # adamw | adam | sgd (with momentum)
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | plateau: x0.1 after plateau_patience epochs without a better val metric
    plateau_patience: int = 2


class Refit(int):
    """`stop_after` for a refit on train+val: the epoch count, and under a plateau schedule the lr scale of each
    epoch of the selected run (no val metric to watch on a refit: its drops are replayed where they happened)."""

    def __new__(cls, epochs: int, lr_scales: list[float] | None = None):
        refit = super().__new__(cls, epochs)
        refit.lr_scales = lr_scales
        return refit


def make_optimizer(groups: list[dict], settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=settings.momentum)
    if settings.optimizer == "adam":
        return torch.optim.Adam(groups)  # weight decay, where a group has one, as L2 (Adam's own)
    return torch.optim.AdamW(groups)


class TrainingImages(Dataset):
    """(normalised image tensor, target row); random augmentation at the input size when given."""

    def __init__(self, images: ImageSource, preprocess: Preprocess, targets: np.ndarray, augment=None):
        self.images, self.preprocess, self.augment = images, preprocess, augment
        self.targets = torch.from_numpy(np.asarray(targets, dtype=np.float32))
        self.draw = (0, 0)  # (seed, epoch): with the index, what an image's augmentation is drawn from

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, seed: int, epoch: int) -> None:
        self.draw = (seed, epoch)

    def __getitem__(self, index: int):
        unit = self.preprocess.fit_unit(self.images.load(index))
        if self.augment is not None:  # seeded per image: the same draw whichever process or worker loads it
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(*self.draw, index))
                unit = self.augment(unit.expand(3, -1, -1) if unit.shape[0] == 1 else unit)
        return self.preprocess.normalize(unit), self.targets[index]


class ConcatImages:
    """Image sources read one after the other (train followed by val for a refit)."""

    def __init__(self, *sources: ImageSource):
        self.sources = sources
        self.in_memory = all(source.in_memory for source in sources)

    def __len__(self) -> int:
        return sum(len(source) for source in self.sources)

    def load(self, index: int):
        for source in self.sources:
            if index < len(source):
                return source.load(index)
            index -= len(source)
        raise IndexError(index)


def classification_loss(task: Task, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if task.single_label:
        return F.cross_entropy(logits, targets.argmax(1))
    known = ~targets.isnan()
    losses = F.binary_cross_entropy_with_logits(logits, targets.nan_to_num(0.0), reduction="none")
    return (losses * known).sum() / known.sum().clamp_min(1)


def probabilities(task: Task, logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(-1) if task.single_label else logits.sigmoid()


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated by this process's tensors; otherwise the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class TrainResult:
    best_epoch: int  # 1-based epoch whose weights are kept
    best_value: float  # val metric at best_epoch (nan without val)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _loader(data: Dataset, settings: TrainSettings, shuffle: bool, ranks=None) -> DataLoader:
    generator = torch.Generator().manual_seed(settings.seed)
    if ranks is not None:  # this rank's part of each global batch, the batches a single process would draw
        return DataLoader(data, batch_sampler=RankShare(data, settings.batch_size, generator, ranks),
                          num_workers=settings.num_workers, pin_memory=settings.device.type == "cuda",
                          worker_init_fn=_worker_seed(settings.seed), generator=generator)  # drawn as without ranks
    return DataLoader(data, batch_size=settings.batch_size, shuffle=shuffle, num_workers=settings.num_workers,
                      generator=generator, drop_last=False, pin_memory=settings.device.type == "cuda",
                      worker_init_fn=_worker_seed(settings.seed))


class RankShare(torch.utils.data.Sampler):
    """Under torchrun: every rank draws the same shuffled global batches (same seeded generator) and takes every
    world-th sample of each. A last global batch smaller than the number of ranks is left out."""

    def __init__(self, data: Dataset, batch_size: int, generator: torch.Generator, ranks):
        from torch.utils.data import BatchSampler, RandomSampler

        self.batches = BatchSampler(RandomSampler(data, generator=generator), batch_size, drop_last=False)
        self.ranks = ranks

    def __iter__(self):
        for batch in self.batches:
            if len(batch) >= self.ranks.world:
                yield batch[self.ranks.rank::self.ranks.world]

    def __len__(self) -> int:
        return len(self.batches)


def _worker_seed(seed: int):
    def init(worker_id: int) -> None:
        torch.manual_seed(seed * 1009 + worker_id)

    return init


def to_device(value, device: torch.device):
    """Tensors, or lists/tuples of them (e.g. feature taps + image), moved to `device`."""
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value.to(device, non_blocking=True)


@torch.no_grad()
def predict(model: torch.nn.Module, task: Task, data: Dataset, settings: TrainSettings) -> tuple[np.ndarray, float]:
    """Class probabilities (N, C) float64 and milliseconds per sample. `data` yields (input, target)."""
    model.eval()
    loader = _loader(data, settings, shuffle=False)
    outputs, start = [], time.perf_counter()
    for batch, _ in loader:
        with autocast(settings.device, settings.precision):
            logits = model(to_device(batch, settings.device))
        outputs.append(probabilities(task, logits.float()).cpu())
    seconds = time.perf_counter() - start
    return torch.cat(outputs).double().numpy(), 1000 * seconds / max(1, len(data))


def train(model: torch.nn.Module, groups: list[dict], data: Dataset, loss_fn: Callable, settings: TrainSettings,
          reporter: Reporter, description: str, validate: Callable[[torch.nn.Module], float] | None = None,
          stop_after: int | None = None) -> TrainResult:
    """Train on (input, target) pairs with `loss_fn(output, target)`; with `validate`, score every epoch,
    keep the best weights and stop after `patience` epochs without improvement. `stop_after` ends training
    after that many epochs of the full schedule (the refit on train+val)."""
    from radbench.distributed import training_ranks

    torch.manual_seed(settings.seed)
    device = settings.device
    model.to(device)
    optimizer = make_optimizer(groups, settings)
    ranks = training_ranks()  # a job every torchrun rank runs together: data split, gradients summed
    loader = _loader(data, settings, shuffle=True, ranks=ranks)
    total = settings.epochs * len(loader)
    warmup = int(settings.warmup_epochs * len(loader))

    plateau = {"scale": 1.0, "stale": 0}  # the plateau schedule's drops so far
    replay = getattr(stop_after, "lr_scales", None)

    def scale(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if settings.schedule == "plateau":
            return plateau["scale"]
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, scale)
    parameters = [p for group in groups for p in group["params"]]
    result = TrainResult(best_epoch=0, best_value=float("nan"))
    best_state, stale, start = None, 0, time.perf_counter()
    epochs = min(settings.epochs, stop_after or settings.epochs)
    with reporter.steps(description, epochs * max(1, len(loader))) as advance:  # moves every batch
        for epoch in range(1, epochs + 1):
            if hasattr(data, "set_epoch"):
                data.set_epoch(settings.seed, epoch)
            if replay is not None and epoch <= len(replay):  # a refit: the selected run's drops, where they were
                plateau["scale"] = replay[epoch - 1]
            model.train()
            losses, epoch_start = [], time.perf_counter()
            for batch, targets in loader:
                with autocast(device, settings.precision):
                    outputs = model(to_device(batch, device))
                loss = loss_fn(outputs.float(), targets.to(device, non_blocking=True))
                optimizer.zero_grad(set_to_none=True)
                if ranks is None:
                    loss.backward()
                else:  # weight by this rank's share of the global batch, then sum: the global batch's gradient
                    share = len(targets) / ranks.total(len(targets))
                    (loss * share).backward()
                    ranks.average_gradients(parameters, average=False)
                    loss = loss.detach() * share * ranks.world
                if settings.grad_clip:
                    torch.nn.utils.clip_grad_norm_(parameters, settings.grad_clip)
                last_lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                advance(1, f"epoch {epoch}/{epochs} loss {np.mean(losses):.4f}")
            record = {"epoch": epoch, "loss": float(np.mean(losses)), "train_seconds": time.perf_counter() - epoch_start,
                      "lr": last_lr, "lr_scale": plateau["scale"] if settings.schedule == "plateau" else None}
            if validate is not None:
                value = validate(model)
                record["val"] = value
                record["val_seconds"] = time.perf_counter() - epoch_start - record["train_seconds"]
                if best_state is None or (not math.isnan(value) and (math.isnan(result.best_value)
                                                                     or value > result.best_value)):
                    result.best_epoch, result.best_value, stale = epoch, value, 0
                    best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                    plateau["stale"] = 0
                else:
                    stale += 1
                    plateau["stale"] += 1
                    if settings.schedule == "plateau" and plateau["stale"] >= settings.plateau_patience:
                        plateau["scale"], plateau["stale"] = plateau["scale"] * 0.1, 0  # saturated: lr / 10
            result.history.append(record)
            if validate is not None and settings.patience is not None and stale >= settings.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = len(result.history)
    result.seconds = time.perf_counter() - start
    return result
