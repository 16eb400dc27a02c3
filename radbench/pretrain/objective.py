"""The self-distillation losses, from lightly: DINO (cross-view CLS distillation, teacher centred and sharpened),
and for dinov2 also iBOT (masked patches distilled from the teacher's unmasked view, DINOv2 block masks) and
KoLeo (spreads the student's CLS features in the batch). With Sinkhorn-Knopp (dinov2's default) the teacher's
targets come from lightly's distributed Sinkhorn instead of centring. Also the collapse monitors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from radbench.pretrain.config import PretrainConfig


@dataclass
class StepOutput:
    loss: torch.Tensor
    parts: dict[str, float]  # dino, ibot, koleo
    monitors: dict[str, float]  # teacher_entropy, teacher_batch_entropy (both / log K), teacher_feature_std


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Losses in float32 at least (bf16 logits under autocast would lose the softmax's tail)."""
    return x if x.dtype == torch.float64 else x.float()


def sinkhorn_targets(logits: torch.Tensor, temp: float) -> torch.Tensor:
    """Teacher probabilities with equal use of every prototype across the batch (3 iterations, as DINOv2)."""
    from lightly.loss.swav_loss import sinkhorn

    return sinkhorn(_wide(logits), iterations=3, epsilon=temp, gather_distributed=True)


def cross_view_entropy(targets: list[torch.Tensor], student_logits: list[torch.Tensor], student_temp: float):
    """Mean over (teacher view t, student view s != t) and the batch of -sum targets_t * log softmax(student_s)."""
    total, terms = 0.0, 0
    for t, target in enumerate(targets):
        for s, logits in enumerate(student_logits):
            if s == t:
                continue
            total = total + torch.sum(-target * F.log_softmax(_wide(logits) / student_temp, dim=-1), dim=-1).mean()
            terms += 1
    return total / terms


def masked_patch_entropy(targets: torch.Tensor, student_logits: torch.Tensor, mask: torch.Tensor,
                         student_temp: float) -> torch.Tensor:
    """iBOT: per masked patch cross-entropy, weighted 1 / (masked patches of its image), summed / images."""
    loss = torch.sum(-targets * F.log_softmax(_wide(student_logits) / student_temp, dim=-1), dim=-1)
    per_image = mask.flatten(1).sum(dim=1, keepdim=True).clamp(min=1).expand_as(mask.flatten(1))
    return (loss / per_image[mask.flatten(1)]).sum() / mask.shape[0]


class Objective(nn.Module):
    """Holds the losses' running state (the teacher centres), saved with every checkpoint."""

    def __init__(self, cfg: PretrainConfig):
        super().__init__()
        from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss

        self.cfg = cfg
        k = cfg.head.output_dim
        self.dino = DINOLoss(k, warmup_teacher_temp=cfg.teacher_temp, teacher_temp=cfg.teacher_temp,
                             student_temp=cfg.student_temp, center_momentum=cfg.center_momentum)
        self.ibot = IBOTPatchLoss(k, teacher_temp=cfg.teacher_temp, student_temp=cfg.student_temp,
                                  center_momentum=cfg.center_momentum)
        self.koleo = KoLeoLoss()

    @torch.no_grad()
    def teacher_probabilities(self, logits: torch.Tensor, temp: float) -> torch.Tensor:
        """The teacher's targets: Sinkhorn-Knopp, or softmax of the centred, sharpened logits (as lightly's DINO
        loss computes them)."""
        if self.cfg.sinkhorn:
            return sinkhorn_targets(logits, temp)
        return F.softmax((_wide(logits) - self.dino.center.view(1, -1)) / temp, dim=-1)

    def forward(self, student: nn.Module, teacher: nn.Module, views: list[torch.Tensor], teacher_temp: float,
                mask: torch.Tensor | None = None) -> StepOutput:
        """views: globals first, then locals (each (B, 3, S, S)). mask (dinov2): (G*B, h, w) over the globals'
        patches, True = masked in the student's input."""
        cfg = self.cfg
        n_global = cfg.n_views()[0]
        batch = views[0].shape[0]
        globals_ = torch.cat(views[:n_global])
        dinov2 = cfg.method == "dinov2"
        flat_mask = mask.flatten(1) if (dinov2 and mask is not None) else None
        with torch.no_grad():
            t_features, t_logits, t_patches = teacher(globals_, patches=flat_mask is not None)
        s_features, s_logits, s_patches = student(globals_, mask=flat_mask, patches=flat_mask is not None)
        student_logits = list(s_logits.chunk(n_global))
        if len(views) > n_global:  # local views (one size): one forward pass
            student_logits += list(student(torch.cat(views[n_global:]))[1].chunk(len(views) - n_global))
        teacher_views = list(t_logits.chunk(n_global))
        targets = self.teacher_probabilities(t_logits, teacher_temp)  # before the centre moves
        if cfg.sinkhorn:
            dino = cross_view_entropy(list(targets.chunk(n_global)), student_logits, cfg.student_temp)
        else:
            dino = self.dino(teacher_views, student_logits, teacher_temp=teacher_temp)
        # cross-entropy = teacher entropy + KL(teacher || student): the KL is what the student is taught to close
        entropy = float(-(targets * targets.clamp_min(1e-12).log()).sum(dim=1).mean())
        loss, parts = dino, {"dino": float(dino.detach()), "dino_kl": float(dino.detach()) - entropy}
        if dinov2:
            ibot = torch.zeros((), device=loss.device)
            if flat_mask is not None and bool(flat_mask.any()):
                t_patch_logits = teacher.head(t_patches[flat_mask]).detach()
                s_patch_logits = student.head(s_patches[flat_mask])
                if cfg.sinkhorn:
                    ibot = masked_patch_entropy(sinkhorn_targets(t_patch_logits, teacher_temp), s_patch_logits,
                                                mask, cfg.student_temp)
                else:
                    ibot = self.ibot(t_patch_logits, s_patch_logits, mask=mask, teacher_temp=teacher_temp)
            koleo = sum(self.koleo(_wide(chunk)) for chunk in s_features.chunk(n_global))
            loss = loss + cfg.ibot.weight * ibot + cfg.koleo_weight * koleo
            parts.update(ibot=float(ibot.detach()), koleo=float(koleo.detach()))
        return StepOutput(loss, parts, self.monitors(t_features[:batch], targets[:batch]))

    @torch.no_grad()
    def monitors(self, features: torch.Tensor, probs: torch.Tensor) -> dict[str, float]:
        """Collapse signs on the teacher's first view: mean per-image entropy of its targets and the entropy of
        the batch's mean target (both / log K: 1 = uniform), and the spread of its L2-normalised features across
        the batch (std per dimension x sqrt(dim): about 1 when well spread, 0 when every image maps to one point)."""
        log_k = math.log(probs.shape[1])
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1).mean() / log_k
        mean = probs.mean(dim=0)
        batch_entropy = -(mean * mean.clamp_min(1e-12).log()).sum() / log_k
        normed = F.normalize(features.float(), dim=1)
        spread = normed.std(dim=0).mean() * math.sqrt(normed.shape[1]) if normed.shape[0] > 1 else torch.tensor(1.0)
        return {"teacher_entropy": float(entropy), "teacher_batch_entropy": float(batch_entropy),
                "teacher_feature_std": float(spread)}


def collapse_warning(monitors: dict[str, float]) -> str | None:
    """A one-line reason when the monitors say the representation collapsed, else None."""
    if monitors["teacher_feature_std"] < 0.05:
        return (f"teacher features collapsed: spread across the batch {monitors['teacher_feature_std']:.3f} "
                "(every image maps to nearly the same vector)")
    if monitors["teacher_batch_entropy"] < 0.05:
        return (f"teacher outputs collapsed onto few prototypes: batch entropy "
                f"{monitors['teacher_batch_entropy']:.3f} of the maximum")
    if monitors["teacher_entropy"] > 0.995:
        return "teacher outputs are uniform over the prototypes (entropy at its maximum): nothing is learned"
    return None
