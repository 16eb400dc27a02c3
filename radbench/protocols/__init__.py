"""Protocols, each a config model plus a `run(config, inputs) -> ProtocolResult`; importing registers them."""

from radbench.protocols import (  # noqa: F401
    decapitation,
    few_shot,
    finetune,
    knn,
    linear,
    logreg,
    retrieval,
    segmentation,
    transformer_head,
    zero_shot,
)
from radbench.protocols.base import PROTOCOLS, ProtocolConfigBase, ProtocolInput, ProtocolResult

__all__ = ["PROTOCOLS", "ProtocolConfigBase", "ProtocolInput", "ProtocolResult"]
