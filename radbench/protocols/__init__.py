"""Frozen-feature protocols, each a config model plus a `run(config, inputs) -> ProtocolResult`."""

from radbench.protocols import knn, linear, logreg  # noqa: F401  (register protocols)
from radbench.protocols.base import PROTOCOLS, ProtocolConfigBase, ProtocolInput, ProtocolResult

__all__ = ["PROTOCOLS", "ProtocolConfigBase", "ProtocolInput", "ProtocolResult"]
