"""A LoRA target list that matches fewer modules in another release: a silent change in the report's
causes, and a break in `compat-matrix check` (the adapter trains less, nothing raises)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reports.build import build_report
from reports.check_view import format_by_cause
from reports.diff import compare_releases, format_upgrade, upgrade_exit_code

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])

TARGETS = r"model\.layers\.\d+\.(?:self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)"


def adapter(modules: dict[str, int]) -> dict[str, Any]:
    matched = sum(modules.values())
    return {"type": "lora", "r": 8, "alpha": 16, "target_modules": TARGETS, "matched": matched, "language": matched,
            "vision": 0, "modules": modules}


ALL = {f"layers.*.{part}": 2 for part in ("self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj")}
ATTENTION_ONLY = {"layers.*.self_attn.q_proj": 2, "layers.*.self_attn.k_proj": 2}


def line(model: str, probe: str, release: str, modules: dict[str, int]) -> dict[str, Any]:
    return {**BASE, "model": model, "hub_id": f"org/{model}", "strategy": "smart", "load_kwargs": "lora", "probe": probe,
            "cell_id": f"{model}-smart-lora-{probe}", "status": "pass", "error_type": None, "message": "",
            "transformers": release, "transformers_requested": release, "env": f"tf{release}",
            "details": {"adapter": adapter(modules)}}


def report(tmp_path: Path, newer: dict[str, int]) -> Any:
    lines = [line(model, probe, release, modules)
             for probe in ("load", "grpo_step")
             for model, changes in (("qwen2_5_vl", True), ("qwen2_vl", False))
             for release, modules in (("4.51.3", ALL), ("4.52.4", newer if changes else ALL))]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return build_report([tmp_path / "r.jsonl"])


def test_fewer_matched_modules_than_in_the_older_release_is_a_silent_cause_and_an_upgrade_break(tmp_path):
    built = report(tmp_path, ATTENTION_ONLY)
    [cause] = built.causes
    assert cause.kind == "silent" and cause.release_ranges == "4.51.3 -> 4.52.4"
    assert cause.models == ("qwen2_5_vl",) and len(cause.cells) == 2
    assert "match fewer modules: 6 -> 4 (lost layers.*.mlp.up_proj x2)" in cause.example
    assert TARGETS in cause.example
    view = compare_releases(built, "4.51.3", "4.52.4")
    assert [s.cell.cell_id for s in view.adapter_losses] == ["qwen2_5_vl-smart-lora-load", "qwen2_5_vl-smart-lora-grpo_step"]
    assert upgrade_exit_code(view) == 1
    assert "LoRA target lists matching fewer modules or covering less when upgrading (2)" in format_upgrade(view)
    assert "something breaks; LoRA targets lost: 1 causes (2 cells)" in format_by_cause(view)


def test_more_matched_modules_is_listed_but_breaks_nothing(tmp_path):
    view = compare_releases(report(tmp_path, ATTENTION_ONLY), "4.52.4", "4.51.3")
    assert view.adapter_losses == () and upgrade_exit_code(view) == 0
    assert [s.field for s in view.silent] == ["adapter_modules", "adapter_modules"]
    assert "match more modules: 4 -> 6 (gained layers.*.mlp.up_proj x2)" in format_upgrade(view)


def test_the_same_modules_in_both_releases_is_no_change(tmp_path):
    built = report(tmp_path, ALL)
    assert built.causes == [] or all(c.kind != "silent" for c in built.causes)
    assert compare_releases(built, "4.51.3", "4.52.4").silent == ()


def _with(modules: dict[str, int], coverage: dict[str, int], trainable: int) -> dict[str, Any]:
    return {**adapter(modules), "coverage": coverage, "trainable": trainable}


def moe_report(tmp_path: Path, newer: dict[str, Any]) -> Any:
    """DeepSeek-V3's `lora` list as peft 0.21.2 adapts it on 4.57.6 (per-expert modules, the dense MLP and
    the shared expert) and on 5.24.0 (the fused experts only), as measured on the tiny model."""
    older = _with({"layers.*.mlp.experts.*.gate_proj": 4, "layers.*.mlp.gate_proj": 1, "layers.*.mlp.shared_experts.gate_proj": 1},
                  {"experts.gate_proj": 4, "mlp.gate_proj": 1, "shared_experts.gate_proj": 1}, 24448)
    lines = []
    for release, summary in (("4.57.6", older), ("5.24.0", newer)):
        cell = line("deepseek_v3", "load", release, {})
        cell["details"] = {"adapter": summary}
        lines.append(cell)
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return build_report([tmp_path / "r.jsonl"])


def test_an_adapter_that_covers_less_is_an_upgrade_break_named_by_projection(tmp_path):
    fused_only = _with({"layers.*.mlp.experts": 1, "layers.*.mlp.experts.base_layer": 1},
                       {"experts.gate_proj": 4}, 19584)
    view = compare_releases(moe_report(tmp_path, fused_only), "4.57.6", "5.24.0")
    fields = {s.field for s in view.adapter_losses}
    assert "adapter_coverage" in fields and upgrade_exit_code(view) == 1
    text = format_upgrade(view)
    assert "adapter_coverage: LoRA covers less: lost mlp.gate_proj x1, shared_experts.gate_proj x1" in text
    assert "adapter_trainable: 24448 -> 19584 trainable LoRA parameters" in text


def test_the_same_coverage_through_a_fused_parameter_with_another_trainable_count_breaks_nothing(tmp_path):
    same_units = _with({"layers.*.mlp.experts.*.gate_proj": 4, "layers.*.mlp.gate_proj": 1,
                        "layers.*.mlp.shared_experts.gate_proj": 1},
                       {"experts.gate_proj": 4, "mlp.gate_proj": 1, "shared_experts.gate_proj": 1}, 26000)
    view = compare_releases(moe_report(tmp_path, same_units), "4.57.6", "5.24.0")
    assert view.adapter_losses == () and upgrade_exit_code(view) == 0
    assert [s.field for s in view.silent] == ["adapter_trainable"]
