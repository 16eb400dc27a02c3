"""Decapitation: keep only the first k blocks (+ the final norm) and put a head on block k's CLS token.

Served from the one cached bundle (it holds every block's CLS token when this protocol is in the study), so
each depth costs no extra backbone pass; `radbench.training.models.decapitate` builds the same truncated model
for training. One reported point per k."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from radbench.protocols.base import (
    PROTOCOLS,
    ProtocolConfigBase,
    ProtocolInput,
    ProtocolResult,
    ProtocolSpec,
    one_point_per,
)
from radbench.schema import PositiveInt


class DecapitationConfig(ProtocolConfigBase):
    keep_blocks: list[PositiveInt] = Field(default=[4, 8, 12], min_length=1)
    head: Literal["linear", "knn", "logreg"] = "linear"
    head_config: dict = {}

    def feature_types(self, default: list[str]) -> list[str]:
        return [f"block{k}" for k in self.keep_blocks]


def run_decapitation(cfg: DecapitationConfig, inputs: ProtocolInput) -> ProtocolResult:
    head = PROTOCOLS.get(cfg.head)
    result = head.run(head.config.model_validate(cfg.head_config), inputs)
    result.details["keep_blocks"] = cfg.keep_blocks[0]
    return result


PROTOCOLS.add("decapitation", ProtocolSpec(
    "decapitation", DecapitationConfig, run_decapitation, "head on block k of the frozen backbone, one point per k",
    variants=one_point_per("keep_blocks", lambda k: f"{k}blocks")))
