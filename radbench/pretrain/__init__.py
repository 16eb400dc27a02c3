"""In-domain self-supervised pretraining (`radbench pretrain`): DINO and DINOv2-style self-distillation of any timm
backbone (or ViTAEv2, DINO-CXR's) on unlabelled scans, whose saved teachers every study accepts as `weights:`."""
