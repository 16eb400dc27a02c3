"""Other libraries' vision models seen through the part of timm's interface radbench calls: forward_features,
forward_head, forward_intermediates (NLC with prefix tokens, or NCHW maps), blocks, num_features, patch_embed.
transformers models (`HFTrunk`) and open_clip's own ViTs (`OpenClipTrunk`)."""

from __future__ import annotations

import inspect

import torch
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


class OpenClipTrunk(nn.Module):
    """open_clip's VisionTransformer (CLS token first; `ln_post` is its final norm; features before `proj`)."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual
        self.embed_dim = self.num_features = int(visual.transformer.width)
        self.num_prefix_tokens = 1
        self.patch_size = int(visual.patch_size[0])
        self.has_cls = True
        self.lora_target_names = {"qkv": ["attn"]}  # nn.MultiheadAttention, which peft adapts as a whole

    @property
    def blocks(self) -> nn.ModuleList:
        return self.visual.transformer.resblocks

    def forward_intermediates(self, images, indices=1, norm: bool = True, output_fmt: str = "NCHW",
                              intermediates_only: bool = True, return_prefix_tokens: bool = False):
        out = self.visual.forward_intermediates(images, indices=indices, normalize_intermediates=norm,
                                                intermediates_only=True, output_fmt=output_fmt,
                                                output_extra_tokens=True)
        maps, prefixes = out["image_intermediates"], out["image_intermediates_prefix"]
        return list(zip(maps, prefixes)) if return_prefix_tokens else list(maps)

    def forward_features(self, images):
        ((patches, prefix),) = self.forward_intermediates(images, 1, output_fmt="NLC", return_prefix_tokens=True)
        return torch.cat([prefix, patches], dim=1)  # normed by ln_post, CLS first

    def forward_head(self, tokens, pre_logits: bool = True):
        return tokens[:, 0]

    def forward(self, images):
        return self.forward_head(self.forward_features(images))


class XRVTrunk(nn.Module):
    """A torchxrayvision CNN (DenseNet or torchvision ResNet with a one-channel stem): reads channel 0 of the
    three identical channels radbench feeds; the pooled vector is its global average after the last stage."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.num_features = int(model.classifier.in_features if hasattr(model, "classifier") else model.fc.in_features)

    def forward_features(self, images):
        x = images[:, :1]
        if hasattr(self.model, "features"):  # DenseNet
            return torch.relu(self.model.features(x))
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))

    def forward_head(self, feature_map, pre_logits: bool = True):
        return feature_map.mean(dim=(2, 3))

    def forward(self, images):
        return self.forward_head(self.forward_features(images))

    @property
    def feature_info(self) -> list[dict]:
        """Four stages, as timm's CNNs list theirs: what segmentation decoders tap."""
        return [{"module": name} for name in self._stage_names()]

    def _stage_names(self) -> list[str]:
        if hasattr(self.model, "features"):
            return [name for name, _ in self.model.features.named_children() if name.startswith("denseblock")]
        return ["layer1", "layer2", "layer3", "layer4"]

    def forward_intermediates(self, images, indices=None, norm: bool = True, output_fmt: str = "NCHW",
                              intermediates_only: bool = True):
        """The feature map after each stage (NCHW; the last normed as the pooled vector sees it) for `indices`."""
        if output_fmt != "NCHW":
            raise BackboneError("torchxrayvision models give NCHW feature maps only")
        wanted = set(range(len(self._stage_names())) if indices is None else indices)
        maps, x = [], images[:, :1]
        if hasattr(self.model, "features"):  # DenseNet: conv0 ... denseblock1, transition1, ..., denseblock4, norm5
            stage = -1
            for name, module in self.model.features.named_children():
                if name == "norm5":
                    continue
                x = module(x)
                if name.startswith("denseblock"):
                    stage += 1
                    last = stage == len(self._stage_names()) - 1
                    out = torch.relu(self.model.features.norm5(x)) if last else x
                    if stage in wanted:
                        maps.append(out)
            return maps
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        for stage, name in enumerate(self._stage_names()):
            x = getattr(m, name)(x)
            if stage in wanted:
                maps.append(x)
        return maps
