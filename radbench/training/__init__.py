"""End-to-end training on images: models with heads, adaptation (LoRA, BitFit, freezing), augmentation, loop."""
