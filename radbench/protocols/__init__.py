"""Frozen-feature protocols, each a config model plus a `run(config, inputs) -> ProtocolResult`."""

from radbench.protocols import knn, linear, logreg  # noqa: F401  (register protocols; heads first)
from radbench.protocols import decapitation, few_shot, finetune, segmentation, transformer_head  # noqa: F401,E402
from radbench.protocols.base import PROTOCOLS, ProtocolConfigBase, ProtocolInput, ProtocolResult

__all__ = ["PROTOCOLS", "ProtocolConfigBase", "ProtocolInput", "ProtocolResult"]
