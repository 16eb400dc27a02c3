"""radbench: benchmark vision foundation models on radiology tasks."""

__version__ = "0.1.0"
