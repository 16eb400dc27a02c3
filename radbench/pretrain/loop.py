"""`radbench pretrain`: data -> views -> student/teacher -> losses -> AdamW + momentum teacher, with a resumable
state and an exported teacher every `checkpoint_every` steps, each evaluated by the config's study.

Under `torchrun` every process takes its share of each global batch; gradients are averaged across processes
after backward (one all-reduce per step), the teacher centres and Sinkhorn targets are computed over all of
them (lightly's distributed centre and Sinkhorn), and process 0 writes every file."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from radbench import arrayfile
from radbench.backbones import describe_backbone
from radbench.data.transforms import Preprocess
from radbench.device import autocast, effective_precision
from radbench.distributed import Ranks
from radbench.errors import RadbenchError
from radbench.features.extract import default_workers_for_files
from radbench.pretrain.config import ParsedPretrain, PretrainConfig
from radbench.pretrain.data import Schedule, ViewDataset, collate_views, gather_images
from radbench.pretrain.evaluate import evaluate_checkpoints
from radbench.pretrain.model import build_networks
from radbench.pretrain.objective import Objective, collapse_warning
from radbench.pretrain.state import checkpoint_folder, export_teacher, load_state, save_state, saved_checkpoints
from radbench.pretrain.views import ViewMaker
from radbench.progress import Reporter


@dataclass
class PretrainSummary:
    steps_run: int = 0
    first_step: int = 0
    last_step: int = 0
    total_steps: int = 0
    images: int = 0
    checkpoints: list[Path] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Values:
    """The scheduled values of one step (DINO's schedules: per step, over all `epochs`)."""

    lr: float
    weight_decay: float
    momentum: float
    teacher_temp: float


def scheduled(cfg: PretrainConfig, step: int, schedule: Schedule) -> Values:
    from lightly.utils.scheduler import cosine_schedule, cosine_warmup_schedule

    total, per_epoch = schedule.total_steps, schedule.steps_per_epoch
    opt = cfg.optimizer
    warmup = min(total, round(opt.warmup_epochs * per_epoch))
    lr = cosine_warmup_schedule(step, total, opt.lr, opt.min_lr, warmup, 0.0) if warmup else \
        cosine_schedule(step, total, opt.lr, opt.min_lr)
    temp_warmup = round(cfg.warmup_teacher_temp_epochs * per_epoch)
    temp = cfg.teacher_temp if step >= temp_warmup else \
        cfg.warmup_teacher_temp + (cfg.teacher_temp - cfg.warmup_teacher_temp) * step / temp_warmup
    return Values(lr, cosine_schedule(step, total, *opt.weight_decay), cosine_schedule(step, total, *cfg.teacher_momentum),
                  temp)


def make_optimizer(student: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA); biases and norms get no weight decay (lightly's split)."""
    from lightly.models.utils import get_weight_decay_parameters

    decay, no_decay = get_weight_decay_parameters([student])
    groups = [{"params": [p for p in decay if p.requires_grad], "decays": True},
              {"params": [p for p in no_decay if p.requires_grad], "weight_decay": 0.0, "decays": False}]
    return torch.optim.AdamW(groups, lr=0.0, fused=device.type == "cuda")


def step_seed(seed: int, step: int) -> int:
    return (seed * 7_919 + step * 104_729 + 17) % (2**63 - 1)


def run_pretraining(parsed: ParsedPretrain, reporter: Reporter | None = None,
                    max_steps: int | None = None) -> PretrainSummary:
    reporter = reporter or Reporter()
    cfg = parsed.config
    started = time.perf_counter()
    place = Ranks.from_env(cfg.device)
    if place.main:
        arrayfile.check_writable(cfg.output_dir)
    norm = describe_backbone(cfg.backbone).normalisation
    preprocess = Preprocess(cfg.image_size, cfg.resize, tuple(norm.mean), tuple(norm.std), norm.interpolation)
    workers = default_workers_for_files() if cfg.num_workers is None else cfg.num_workers
    with place.rank_zero_first():  # process 0 builds the preprocessing cache
        sources = gather_images(parsed.datasets, cfg.splits, preprocess, cfg.cache_root, cfg.preprocess_dtype,
                                workers, reporter if place.main else Reporter(quiet=True))
    schedule = Schedule(sum(len(s) for s in sources), cfg.batch_size, cfg.epochs, cfg.seed)
    if cfg.batch_size % place.world:
        raise RadbenchError(f"batch_size {cfg.batch_size} does not split over {place.world} processes")
    device, precision = place.device, effective_precision(place.device, cfg.precision)
    student, teacher = build_networks(cfg)
    student.to(device)
    teacher.to(device)
    objective = Objective(cfg).to(device)
    optimizer = make_optimizer(student, device)
    identity = cfg.training_identity()
    state_path = cfg.output_dir / "state.pt"
    step = load_state(state_path, identity, student=student, teacher=teacher, objective=objective, optimizer=optimizer)
    end = min([schedule.total_steps] + [s for s in (cfg.max_steps, max_steps) if s is not None])
    summary = PretrainSummary(first_step=step, last_step=step, total_steps=schedule.total_steps,
                              images=schedule.n_images)
    backbone = {"name": cfg.backbone.name, "label": cfg.name, "model_kwargs": cfg.backbone.model_kwargs}
    described = {"pretrained_by": "radbench pretrain", "config": parsed.source, "method": cfg.method,
                 "views": cfg.views, "backbone": cfg.backbone.model_dump(mode="json"), "images": schedule.n_images}

    def save_checkpoint(at: int) -> None:
        if not place.main:
            return
        folder = checkpoint_folder(cfg.output_dir, at)
        summary.checkpoints.append(export_teacher(folder, teacher, step=at, backbone=backbone,
                                                  preprocess=preprocess.identity(), description=described))

    if place.main:
        reporter.info(f"pretraining {cfg.name}: {cfg.method}, {cfg.views} views, {schedule.n_images} images, "
                      f"{schedule.steps_per_epoch} steps per epoch, {schedule.total_steps} steps in all; "
                      f"{device.type}, {precision}" + (f"; resuming at step {step}" if step else ""))
        _trim_log(cfg.output_dir / "log.jsonl", step)
        arrayfile.clean_stale_temporaries(cfg.output_dir)  # a killed run's half-written state or teachers
        if step == 0 and cfg.evaluate is not None and cfg.evaluate.initial:
            save_checkpoint(0)
        if step > 0 and step not in dict(saved_checkpoints(cfg.output_dir)):
            save_checkpoint(step)  # killed between the state and its teacher: the state's teacher is that teacher
        if cfg.evaluate is not None:
            evaluate_checkpoints(cfg, saved_checkpoints(cfg.output_dir), reporter)
    if step >= end:
        return summary
    dataset = ViewDataset(sources, schedule, ViewMaker.from_config(cfg, preprocess.mean, preprocess.std))
    batches = [schedule.batch_positions(s, place.rank, place.world) for s in range(step, end)]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate_views,
                        pin_memory=device.type == "cuda", persistent_workers=False,
                        prefetch_factor=4 if workers else None)
    freeze_steps = round(cfg.freeze_last_layer_epochs * schedule.steps_per_epoch)
    student.head.freeze_last_layer = freeze_steps  # lightly cancels the prototypes' gradients before this step
    trainee = Trainee(student, teacher, objective, optimizer, place)
    warned = False
    log = open(cfg.output_dir / "log.jsonl", "a") if place.main else None
    tick = time.perf_counter()
    try:
        with reporter.steps(f"pretrain {cfg.name}", end, done=step) as advance:
            for views in loader:
                values = scheduled(cfg, step, schedule)
                out, loss = train_step(cfg, trainee, views, step, values, precision)
                step += 1
                now = time.perf_counter()
                images_per_s = cfg.batch_size / max(now - tick, 1e-9)
                tick = now
                summary.steps_run += 1
                summary.last_step = step
                if log is not None:
                    log.write(json.dumps({"step": step, "loss": loss, **out.parts, "lr": values.lr,
                                          "weight_decay": values.weight_decay, "momentum": values.momentum,
                                          "teacher_temp": values.teacher_temp, **out.monitors,
                                          "images_per_s": images_per_s}) + "\n")
                    log.flush()
                advance(1, f"loss {loss:.4f} lr {values.lr:.2e} m {values.momentum:.4f} "
                           f"{images_per_s:.0f} img/s")
                reason = collapse_warning(out.monitors)
                if reason and not warned and step > freeze_steps and place.main:
                    reporter.warn(f"COLLAPSE at step {step}: {reason}; see {cfg.output_dir / 'log.jsonl'}")
                    warned = True
                if step % cfg.checkpoint_every == 0 or step == end:
                    if place.main:
                        save_state(state_path, step=step, identity=identity, student=student, teacher=teacher,
                                   objective=objective, optimizer=optimizer)
                        save_checkpoint(step)
                        if cfg.evaluate is not None:
                            evaluate_checkpoints(cfg, saved_checkpoints(cfg.output_dir), reporter)
                    place.barrier()
    finally:
        if log is not None:
            log.close()
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class Trainee:
    """What one step updates, and where (this process's place under torchrun)."""

    student: torch.nn.Module
    teacher: torch.nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    place: Ranks

    @property
    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.student.parameters() if p.requires_grad]


def train_step(cfg: PretrainConfig, trainee: Trainee, views: list[torch.Tensor], step: int, values: Values,
               precision: str):
    """One optimisation step at `step` with its scheduled values; returns (StepOutput, loss as a float)."""
    student, teacher, optimizer, place = trainee.student, trainee.teacher, trainee.optimizer, trainee.place
    for group in optimizer.param_groups:
        group["lr"] = values.lr
        if group["decays"]:
            group["weight_decay"] = values.weight_decay
    seed = step_seed(cfg.seed, step)  # dropout, drop-path and masks (torch's and Python's RNG): a function of
    torch.manual_seed(seed)  # the step, so a resumed run draws the same
    random.seed(seed)
    views = [v.to(place.device, non_blocking=True) for v in views]
    mask = _block_mask(cfg, student, views) if cfg.method == "dinov2" else None
    with autocast(place.device, precision):
        out = trainee.objective(student, teacher, views, values.teacher_temp, mask)
    loss = place.mean(float(out.loss.detach()))
    if not math.isfinite(loss):
        raise RadbenchError(f"pretraining loss became {loss} at step {step}; lower optimizer.lr or raise "
                            "warmup_epochs (the last checkpoint is kept)")
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    parameters = trainee.parameters
    place.average_gradients(parameters)
    student.head.cancel_last_layer_gradients(step)
    if cfg.optimizer.clip_grad is not None:
        torch.nn.utils.clip_grad_norm_(parameters, cfg.optimizer.clip_grad)
    optimizer.step()
    _momentum_update(student, teacher, values.momentum)
    return out, loss


def _block_mask(cfg: PretrainConfig, student, views: list[torch.Tensor]) -> torch.Tensor:
    """DINOv2's block masks (lightly) for the global views' patch grid: (G * B, h, w)."""
    from lightly.models.utils import random_block_mask

    patch = student.trunk.patch_embed.patch_size
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    grid = cfg.image_size // patch
    n = views[0].shape[0] * cfg.n_views()[0]
    low, high = cfg.ibot.mask_ratio
    smallest_block = max(1, min(4, int(low * grid * grid)))  # DINOv2's 4 patches, fewer on tiny grids
    return random_block_mask((n, grid, grid), batch_mask_ratio=cfg.ibot.mask_probability, min_image_mask_ratio=low,
                             max_image_mask_ratio=high, min_num_masks_per_block=smallest_block,
                             device=views[0].device)


@torch.no_grad()
def _momentum_update(student, teacher, momentum: float) -> None:
    from lightly.models.utils import update_momentum

    update_momentum(student, teacher, momentum)


def _trim_log(path: Path, step: int) -> None:
    """A resumed run rewrites the steps after its state: drop those lines (and a line cut by a kill)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError):
            continue
    arrayfile.write_text(path, "".join(f"{line}\n" for line in kept))
