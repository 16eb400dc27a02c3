"""A transformers vision model seen through the part of timm's interface radbench calls: forward_features,
forward_head, forward_intermediates (NLC with prefix tokens, or NCHW maps), blocks, num_features, patch_embed."""

from __future__ import annotations

import inspect

from torch import nn

from radbench.errors import BackboneError

NO_CLS_TOKEN = ("siglip",)  # model types without a CLS token: their pooling head gives the image vector
LORA_NAMES = {"qkv": ["query", "key", "value", "q_proj", "k_proj", "v_proj"]}  # timm's module names -> HF's
BLOCK_PATHS = ("encoder.layer", "encoder.layers", "layers", "layer")


def find(module, *paths: str):
    """The first attribute path that exists under `module` (transformers versions and models nest differently)."""
    for path in paths:
        node = module
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if node is not None:
            return node
    return None


class HFTrunk(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        vision = find(model, "vision_model") or model  # CLIP / SigLIP / BLIP: the image tower
        self.vision = vision
        config = vision.config
        self.model_type = getattr(config, "model_type", "")
        self.embed_dim = self.num_features = int(config.hidden_size)
        self.has_cls = not any(kind in self.model_type for kind in NO_CLS_TOKEN)
        self.num_prefix_tokens = int(self.has_cls) + int(getattr(config, "num_register_tokens", 0) or 0)
        self.patch_size = int(config.patch_size)
        self.lora_target_names = LORA_NAMES
        self._takes_interpolate = "interpolate_pos_encoding" in inspect.signature(vision.forward).parameters
        if find(vision, *BLOCK_PATHS) is None:
            raise BackboneError(f"{type(vision).__name__}: no transformer blocks found")

    @property
    def blocks(self) -> nn.ModuleList:
        return find(self.vision, *BLOCK_PATHS)

    @property
    def patch_embed(self) -> nn.Module:
        return self.vision.embeddings

    @property
    def norm(self) -> nn.Module:
        return find(self.vision, "layernorm", "post_layernorm") or nn.Identity()

    def _hidden_states(self, images):
        kwargs = {"interpolate_pos_encoding": True} if self._takes_interpolate else {}
        return self.vision(pixel_values=images, output_hidden_states=True, **kwargs).hidden_states[1:]

    def forward_features(self, images):
        return self.norm(self._hidden_states(images)[-1])

    def forward_head(self, tokens, pre_logits: bool = True):
        if self.has_cls:
            return tokens[:, 0]
        head = find(self.vision, "head")
        return head(tokens) if head is not None else tokens.mean(dim=1)

    def forward(self, images):
        return self.forward_head(self.forward_features(images))

    def forward_intermediates(self, images, indices=1, norm: bool = True, output_fmt: str = "NCHW",
                              intermediates_only: bool = True, return_prefix_tokens: bool = False):
        states = self._hidden_states(images)
        chosen = states[-indices:] if isinstance(indices, int) else [states[i] for i in indices]
        out = []
        for state in chosen:
            state = self.norm(state) if norm else state
            prefix, patches = state[:, :self.num_prefix_tokens], state[:, self.num_prefix_tokens:]
            if output_fmt == "NCHW":
                height, width = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
                patches = patches.transpose(1, 2).reshape(len(patches), -1, height, width)
            out.append((patches, prefix) if return_prefix_tokens else patches)
        return out
