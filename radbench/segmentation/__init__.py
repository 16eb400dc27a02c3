"""Segmentation on foundation-model features: dense feature taps, decoders, data, inference."""
