"""The named backbones: the seed studies' models and today's, at the sizes the papers used. Each row: name, timm
model id, description, parameters (M, head removed), native input size, patch size, normalisation, weights
licence, token model (CLS + blocks), pooling. `tests/test_zoo.py` checks every row against the architecture
(built on the meta device) and its pretrained config, so `radbench list backbones` can show it without torch."""

from __future__ import annotations

from radbench.backbones.base import BACKBONES, BackboneEntry

T, P = True, False  # token model, pooled model

TIMM_ZOO = [
    # DINOv2 (Oquab et al. 2023): the seeds' main subject; the with-register variants (Darcet et al. 2024)
    ("dinov2_vits14", "vit_small_patch14_dinov2.lvd142m", "DINOv2 ViT-S/14", 22.1, 518, 14, "imagenet", "apache-2.0", T),
    ("dinov2_vitb14", "vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14", 86.6, 518, 14, "imagenet", "apache-2.0", T),
    ("dinov2_vitl14", "vit_large_patch14_dinov2.lvd142m", "DINOv2 ViT-L/14", 304.4, 518, 14, "imagenet", "apache-2.0", T),
    ("dinov2_vitg14", "vit_giant_patch14_dinov2.lvd142m", "DINOv2 ViT-g/14", 1136.5, 518, 14, "imagenet", "apache-2.0",
     T),
    ("dinov2_vits14_reg", "vit_small_patch14_reg4_dinov2.lvd142m", "DINOv2 ViT-S/14 with 4 registers", 22.1, 518, 14,
     "imagenet", "apache-2.0", T),
    ("dinov2_vitb14_reg", "vit_base_patch14_reg4_dinov2.lvd142m", "DINOv2 ViT-B/14 with 4 registers", 86.6, 518, 14,
     "imagenet", "apache-2.0", T),
    ("dinov2_vitl14_reg", "vit_large_patch14_reg4_dinov2.lvd142m", "DINOv2 ViT-L/14 with 4 registers", 304.4, 518, 14,
     "imagenet", "apache-2.0", T),
    ("dinov2_vitg14_reg", "vit_giant_patch14_reg4_dinov2.lvd142m", "DINOv2 ViT-g/14 with 4 registers", 1136.5, 518, 14,
     "imagenet", "apache-2.0", T),
    # DINOv3 (Siméoni et al. 2025): ViTs with 4 registers and RoPE, and the distilled ConvNeXts
    ("dinov3_vits16", "vit_small_patch16_dinov3.lvd1689m", "DINOv3 ViT-S/16", 21.6, 256, 16, "imagenet",
     "dinov3-license", T),
    ("dinov3_vitb16", "vit_base_patch16_dinov3.lvd1689m", "DINOv3 ViT-B/16", 85.6, 256, 16, "imagenet",
     "dinov3-license", T),
    ("dinov3_vitl16", "vit_large_patch16_dinov3.lvd1689m", "DINOv3 ViT-L/16", 303.1, 256, 16, "imagenet",
     "dinov3-license", T),
    ("dinov3_vith16plus", "vit_huge_plus_patch16_dinov3.lvd1689m", "DINOv3 ViT-H+/16", 840.5, 256, 16, "imagenet",
     "dinov3-license", T),
    ("dinov3_convnext_tiny", "convnext_tiny.dinov3_lvd1689m", "DINOv3 ConvNeXt-T (distilled)", 27.8, 224, None,
     "imagenet", "dinov3-license", P),
    ("dinov3_convnext_small", "convnext_small.dinov3_lvd1689m", "DINOv3 ConvNeXt-S (distilled)", 49.5, 224, None,
     "imagenet", "dinov3-license", P),
    ("dinov3_convnext_base", "convnext_base.dinov3_lvd1689m", "DINOv3 ConvNeXt-B (distilled)", 87.6, 224, None,
     "imagenet", "dinov3-license", P),
    ("dinov3_convnext_large", "convnext_large.dinov3_lvd1689m", "DINOv3 ConvNeXt-L (distilled)", 196.2, 224, None,
     "imagenet", "dinov3-license", P),
    # DINOv1 (Caron et al. 2021), MAE (He et al. 2022): the seeds' self-supervised baselines
    ("dino_vits16", "vit_small_patch16_224.dino", "DINO ViT-S/16", 21.7, 224, 16, "imagenet", "apache-2.0", T),
    ("dino_vitb16", "vit_base_patch16_224.dino", "DINO ViT-B/16", 85.8, 224, 16, "imagenet", "apache-2.0", T),
    ("mae_vitb16", "vit_base_patch16_224.mae", "MAE ViT-B/16 (pretrained, not fine-tuned)", 85.8, 224, 16, "imagenet",
     "cc-by-nc-4.0", T),
    ("mae_vitl16", "vit_large_patch16_224.mae", "MAE ViT-L/16 (pretrained, not fine-tuned)", 303.3, 224, 16,
     "imagenet", "cc-by-nc-4.0", T),
    ("mae_vith14", "vit_huge_patch14_224.mae", "MAE ViT-H/14 (pretrained, not fine-tuned)", 630.8, 224, 14,
     "imagenet", "cc-by-nc-4.0", T),
    # CLIP image towers: OpenAI's and OpenCLIP's on LAION-2B (CLIP normalisation from the weights' config)
    ("clip_vitb16", "vit_base_patch16_clip_224.openai", "CLIP ViT-B/16 image tower (OpenAI)", 85.8, 224, 16, "clip",
     "apache-2.0", T),
    ("clip_vitl14", "vit_large_patch14_clip_224.openai", "CLIP ViT-L/14 image tower (OpenAI)", 303.2, 224, 14, "clip",
     "apache-2.0", T),
    ("openclip_vitb16", "vit_base_patch16_clip_224.laion2b", "OpenCLIP ViT-B/16 image tower (LAION-2B)", 85.8, 224, 16,
     "clip", "apache-2.0", T),
    ("openclip_vitl14", "vit_large_patch14_clip_224.laion2b", "OpenCLIP ViT-L/14 image tower (LAION-2B)", 303.2, 224,
     14, "0.5", "apache-2.0", T),
    ("openclip_vith14", "vit_huge_patch14_clip_224.laion2b", "OpenCLIP ViT-H/14 image tower (LAION-2B)", 630.8, 224,
     14, "clip", "apache-2.0", T),
    # SigLIP 2 (Tschannen et al. 2025): attention-pooled, no CLS token
    ("siglip2_vitb16", "vit_base_patch16_siglip_224.v2_webli", "SigLIP 2 ViT-B/16 image tower", 92.9, 224, 16, "0.5",
     "apache-2.0", P),
    ("siglip2_vitl16", "vit_large_patch16_siglip_256.v2_webli", "SigLIP 2 ViT-L/16 image tower", 316.0, 256, 16, "0.5",
     "apache-2.0", P),
    ("siglip2_so400m", "vit_so400m_patch16_siglip_256.v2_webli", "SigLIP 2 So400m/16 image tower", 427.9, 256, 16,
     "0.5", "apache-2.0", P),
    # supervised ImageNet baselines of the seeds
    ("deit_small", "deit_small_patch16_224.fb_in1k", "DeiT-S/16, ImageNet-1k", 21.7, 224, 16, "imagenet", "apache-2.0",
     T),
    ("deit_base", "deit_base_patch16_224.fb_in1k", "DeiT-B/16, ImageNet-1k", 85.8, 224, 16, "imagenet", "apache-2.0",
     T),
    ("vit_large_in21k", "vit_large_patch16_224.augreg_in21k", "supervised ViT-L/16, ImageNet-21k", 303.3, 224, 16,
     "0.5", "apache-2.0", T),
    ("resnet152", "resnet152.tv_in1k", "ResNet-152, ImageNet-1k (torchvision weights)", 58.1, 224, None, "imagenet",
     "bsd-3-clause", P),
    ("densenet201", "densenet201.tv_in1k", "DenseNet-201, ImageNet-1k (torchvision weights)", 18.1, 224, None,
     "imagenet", "apache-2.0", P),
    ("vgg19", "vgg19.tv_in1k", "VGG-19, ImageNet-1k (torchvision weights)", 139.6, 224, None, "imagenet",
     "bsd-3-clause", P),
]

# SAM image encoders (Kirillov et al. 2023): as the seeds pooled them, the mean of the last block's tokens; the
# `_neck` entries give the 256-d neck output (what SAM's mask decoder reads), averaged over positions
SAM = [("b", "base", 89.7), ("l", "large", 308.3), ("h", "huge", 637.0)]

CLIP_TOWERS = {"clip_vitb16", "clip_vitl14", "openclip_vitb16", "openclip_vitl14", "openclip_vith14"}  # keep `proj`

for name, model_id, description, params, native, patch, norm, licence, tokens in TIMM_ZOO:
    BACKBONES.add(name, BackboneEntry(name, "timm", model_id, description, params, native, patch, norm, licence, tokens,
                                      embed=name in CLIP_TOWERS))
for size, word, params in SAM:
    model_id = f"samvit_{word}_patch16.sa1b"
    BACKBONES.add(f"sam_vit{size}", BackboneEntry(
        f"sam_vit{size}", "timm", model_id, f"SAM ViT-{size.upper()} image encoder, mean of the last block's tokens",
        params, 1024, 16, "imagenet", "apache-2.0", False, "last_block"))
    BACKBONES.add(f"sam_vit{size}_neck", BackboneEntry(
        f"sam_vit{size}_neck", "timm", model_id, f"SAM ViT-{size.upper()} image encoder, 256-d neck output", params,
        1024, 16, "imagenet", "apache-2.0", False))
