"""torchxrayvision's supervised chest X-ray models: `xrv:<weights name>` (e.g. `xrv:densenet121-res224-all`,
`xrv:resnet50-res512-all`), `weights:` hub (torchxrayvision downloads them), none (the architecture, random) or
a state-dict file. Their own input convention travels with them: one channel, intensities in [-1024, 1024]
(torchxrayvision's `normalize`), which radbench's pipeline reaches with mean 0.5 and std 1/2048 on a [0, 1]
image; the model reads the first of the three identical channels."""

from __future__ import annotations

from radbench.backbones.base import (
    BACKBONES,
    FAMILIES,
    BackboneConfig,
    BackboneDescription,
    BackboneEntry,
    Family,
    FeatureBackbone,
    Normalisation,
    checkpoint_path,
)
from radbench.backbones.checkpoint import checkpoint_sha256
from radbench.errors import BackboneError, DownloadError

XRV_MEAN = (0.5, 0.5, 0.5)  # [0, 1] -> (x - 0.5) * 2048 = [-1024, 1024]
XRV_STD = (1 / 2048, 1 / 2048, 1 / 2048)
ARCHITECTURES = ("densenet121-", "resnet50-", "resnet101-")


def xrv_exists(model_id: str) -> bool:
    return model_id.startswith(ARCHITECTURES)


def describe_xrv(entry: BackboneEntry, cfg: BackboneConfig) -> BackboneDescription:
    identity: dict = {"family": "xrv", "model_id": entry.model_id, "weights": cfg.weights_kind}
    path = checkpoint_path(cfg)
    if path is not None:
        identity["checkpoint_sha256"] = checkpoint_sha256(path)
    return BackboneDescription(identity, Normalisation(tuple(cfg.mean or XRV_MEAN), tuple(cfg.std or XRV_STD),
                                                       "bilinear"))


def _architecture(model_id: str):
    """The model of `model_id` with random weights, as torchxrayvision builds it (without its download)."""
    import torch
    import torchvision
    import torchxrayvision as xrv

    if model_id.startswith("densenet121-"):
        return xrv.models.DenseNet(weights=None)
    labels = xrv.models.model_urls[model_id]["labels"]
    model = getattr(torchvision.models, model_id.split("-")[0])(num_classes=len(labels), weights=None)
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)  # one channel, as xrv
    return model


def build_xrv(entry: BackboneEntry, cfg: BackboneConfig, image_size: int) -> FeatureBackbone:
    import torch
    import torchxrayvision as xrv

    from radbench.backbones.adapters import XRVTrunk
    from radbench.backbones.checkpoint import read_state_dict

    if entry.model_id not in xrv.models.model_urls:
        raise BackboneError(f"backbone {cfg.name!r}: unknown torchxrayvision weights {entry.model_id!r}")
    try:
        if cfg.weights_kind == "hub":
            kind = xrv.models.DenseNet if entry.model_id.startswith("densenet") else xrv.models.ResNet
            model = kind(weights=entry.model_id)
            model = getattr(model, "model", model)  # xrv's ResNet wraps a torchvision model
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = _architecture(entry.model_id)
    except Exception as error:
        message = " ".join(str(error).split())[:160] or type(error).__name__
        raise DownloadError(f"could not download backbone {cfg.name!r} (torchxrayvision {entry.model_id}): "
                            f"{message}; without network use `weights: none` or a state-dict file") from None
    path = checkpoint_path(cfg)
    if path is not None:
        missing, unexpected = model.load_state_dict(read_state_dict(path), strict=False)
        if missing:
            raise BackboneError(f"{path}: not a {entry.model_id} state dict (missing {missing[0]}, ...)")
    trunk = XRVTrunk(model).eval().requires_grad_(False)
    return FeatureBackbone(cfg.display_name, trunk, "pooled", trunk.num_features, describe_xrv(entry, cfg),
                           lambda x, layout: trunk.forward_head(trunk.forward_features(x), pre_logits=True))


FAMILIES.add("xrv", Family("xrv", build_xrv, xrv_exists, describe_xrv))
for _name, _weights, _description, _params, _native in [
    ("xrv_densenet121_all", "densenet121-res224-all", "torchxrayvision DenseNet-121, 8 CXR datasets (supervised)",
     7.0, 224),
    ("xrv_resnet50_all", "resnet50-res512-all", "torchxrayvision ResNet-50, 8 CXR datasets (supervised)", 23.5, 512),
]:
    BACKBONES.add(_name, BackboneEntry(_name, "xrv", _weights, _description, _params, _native, None,
                                       "xrv [-1024, 1024], 1 channel", "apache-2.0"))
