"""Student and teacher: a backbone from radbench's registry plus lightly's DINO projection head. ViTs are wrapped in
lightly's MaskedVisionTransformerTIMM (weights untouched) so that dinov2 can replace patches by a mask token."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from radbench.backbones import BackboneConfig, build_backbone, resolve_entry
from radbench.errors import BackboneError
from radbench.pretrain.config import PretrainConfig


class SelfDistillationNetwork(nn.Module):
    """backbone + head. `forward(images, mask)` -> (CLS features, CLS logits, patch tokens or None)."""

    def __init__(self, trunk: nn.Module, cfg: PretrainConfig):
        super().__init__()
        from lightly.models.modules import DINOProjectionHead

        self.is_vit = hasattr(trunk, "patch_embed") and getattr(trunk, "cls_token", None) is not None
        if self.is_vit:
            from lightly.models.modules import MaskedVisionTransformerTIMM

            # "skip": keep the registry's (pretrained or seeded random) weights and position embeddings
            self.backbone = MaskedVisionTransformerTIMM(trunk, weight_initialization="skip",
                                                        pos_embed_initialization="skip")
            width = trunk.embed_dim
        else:
            if cfg.method == "dinov2":
                raise BackboneError(f"method dinov2 masks patch tokens: backbone {cfg.backbone.name!r} is not a ViT "
                                    "with a CLS token (use method: dino)")
            self.backbone = trunk
            width = trunk.num_features
        head = cfg.head
        with warnings.catch_warnings():  # lightly's head uses torch's older weight_norm; still supported
            warnings.simplefilter("ignore", FutureWarning)
            self.head = DINOProjectionHead(width, head.hidden_dim, head.bottleneck_dim, head.output_dim,
                                           norm_last_layer=head.norm_last_layer)
        self.prefix_tokens = getattr(trunk, "num_prefix_tokens", 0)

    @property
    def trunk(self) -> nn.Module:
        """The plain registry model (what is saved and later loaded as `weights:`)."""
        return self.backbone.vit if self.is_vit else self.backbone

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None, patches: bool = False):
        if not self.is_vit:
            features = self.backbone(images)
            return features, self.head(features), None
        if mask is not None:  # (B, N) over patches -> (B, prefix + N): prefix tokens are never masked
            prefix = mask.new_zeros((mask.shape[0], self.prefix_tokens))
            mask = torch.cat([prefix, mask], dim=1)
        tokens = self.backbone.encode(images, mask=mask)
        cls = tokens[:, 0]
        patch_tokens = tokens[:, self.prefix_tokens:] if patches else None
        return cls, self.head(cls), patch_tokens


PRETRAINABLE = ("timm", "vitaev2")  # families whose saved state dict loads back as `weights:`


def build_networks(cfg: PretrainConfig) -> tuple[SelfDistillationNetwork, SelfDistillationNetwork]:
    """(student, teacher): the same starting weights; the teacher is only ever updated by momentum."""
    entry = resolve_entry(cfg.backbone.name)
    if entry.family not in PRETRAINABLE:
        raise BackboneError(f"pretraining builds timm and ViTAEv2 backbones; {cfg.backbone.name!r} is a "
                            f"{entry.family} model")
    try:
        trunk = build_backbone(training_backbone(cfg.backbone, cfg), cfg.image_size).model
    except BackboneError:
        if cfg.views != "multicrop":
            raise
        trunk = build_backbone(cfg.backbone, cfg.image_size).model  # a CNN: any input size, no such option
    trunk.train().requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # the head's initialisation belongs to the run's seed
        student = SelfDistillationNetwork(trunk, cfg)
    teacher = SelfDistillationNetwork(copy.deepcopy(trunk), cfg)  # (a weight-normed head cannot be deep-copied)
    teacher.load_state_dict(student.state_dict())
    teacher.requires_grad_(False)
    return student, teacher


def training_backbone(backbone: BackboneConfig, cfg: PretrainConfig) -> BackboneConfig:
    """Local views are smaller than the model's grid: a ViT interpolates its position embeddings for them
    (timm's dynamic_img_size; the saved weights keep the image_size grid)."""
    if cfg.views != "multicrop":
        return backbone
    return backbone.model_copy(update={"model_kwargs": {**backbone.model_kwargs, "dynamic_img_size": True}})
