"""The router of a mixture of experts in a training step: its auxiliary (load-balancing) loss and its gradient.

As TRL's GRPOTrainer (1.x) does: where the (text) config has `output_router_logits` and a non-zero
`router_aux_loss_coef`, the training forward is asked for the router logits and the loss gains
coef x `aux_loss`. The step then checks that the auxiliary loss came back and is finite, and that a
gradient reaches the router weights (through the routing weights and the auxiliary loss).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ROUTER = re.compile(r"\.(?:mlp|block_sparse_moe|feed_forward)\.(?:gate|router)\.weight$")
"""A router's weight: `mlp.gate.weight` (Qwen-MoE, OLMoE, DeepSeek, Mixtral on 5.x), Mixtral's
`block_sparse_moe.gate.weight` on 4.x, gpt-oss's `mlp.router.weight`."""


@dataclass(frozen=True)
class AuxLoss:
    """Whether the step adds the router's auxiliary loss, and its coefficient."""

    enabled: bool
    coef: float


def aux_loss_setting(model: Any) -> AuxLoss:
    """TRL's rule: the text config has `output_router_logits` (an MoE) and `router_aux_loss_coef` is not 0."""
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    coef = float(getattr(text, "router_aux_loss_coef", 0.0) or 0.0)
    return AuxLoss(hasattr(text, "output_router_logits") and coef != 0.0, coef)


def router_parameters(model: Any) -> list[Any]:
    """The router weights of every MoE layer (empty for a dense model)."""
    return [p for name, p in model.named_parameters() if ROUTER.search(name)]
