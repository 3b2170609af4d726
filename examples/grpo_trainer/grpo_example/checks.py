"""The package's own check: one policy-gradient step on the fixed inputs changes the weights and
keeps the loss finite (what a GRPO step needs from any release)."""

from __future__ import annotations

import torch

from compat_matrix.spec.user import ProbeInput, ProbeResult


def one_step(ctx: ProbeInput) -> ProbeResult:
    model = ctx.model.train()
    inputs = ctx.image_inputs or ctx.inputs
    logits = model(**inputs).logits[:, :-1].float()
    targets = inputs["input_ids"][:, 1:]
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    loss = -(logprobs * 0.5).mean()  # a constant advantage: the smallest policy-gradient step
    loss.backward()
    head = model.get_output_embeddings().weight
    before = head.detach().clone()
    torch.optim.SGD(model.parameters(), lr=1e-2).step()
    moved = float((head.detach() - before).abs().max())
    passed = bool(torch.isfinite(loss)) and moved > 0
    return ProbeResult(passed, "" if passed else f"loss {float(loss)}, head moved {moved}",
                       {"loss": float(loss), "head_moved": moved})
