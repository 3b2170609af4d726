"""Weight accounting judged on the tensors, whoever loads the model: planted re-initialisations that
transformers does not report, text-only routes on a multimodal checkpoint, and the cases that must
not be alarms (a tied `lm_head`, rotary buffers the model computes, a bf16 load, fused experts)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from compat_matrix.spec.cells import Cell
from compat_matrix.spec.validate import DEFAULT_MATRIX, MatrixError, load_matrix
from compat_tests.execute import MatrixState, Prepared, run_cell
from compat_tests.tiny.checkpoint import build_checkpoint
from compat_tests.tiny.inputs import InputBuilder
from loader.accounting import account

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)

TEXT_LOADERS_PY = '''
import transformers
from safetensors.torch import load_file

LAYOUTS = (("model.language_model.", "model."), ("language_model.model.", "model."), ("language_model.lm_head.", "lm_head."))
"""LLaVA's text side in the layouts releases save (4.x: language_model.model.*, 5.x: model.language_model.*)."""

def _text_model(path, skip=()):
    config = transformers.AutoConfig.from_pretrained(path)
    model = transformers.LlamaForCausalLM(config.text_config)
    state = {}
    for key, tensor in load_file(f"{path}/model.safetensors").items():
        for old, new in LAYOUTS:
            if key.startswith(old):
                state[new + key[len(old):]] = tensor
    state = {k: v for k, v in state.items() if not any(part in k for part in skip)}
    model.load_state_dict(state, strict=False)  # as hand-written loaders do: what is absent keeps its init
    return model.eval()

def load_text(path, **kwargs):
    return _text_model(path)

def load_text_missing_layer(path, **kwargs):
    return _text_model(path, skip=("layers.1.self_attn.",))  # a key layout this loader does not know
'''

TEXT_MATRIX = """\
transformers: [4.57.6]
strategies:
  - explicit_class
  - {name: text_loader, callable: "textloaders_t.models:load_text", modality: text}
  - {name: text_loader_missing, callable: "textloaders_t.models:load_text_missing_layer", modality: text}
  - {name: undeclared, callable: "textloaders_t.models:load_text"}
probes: [load, forward]
models:
  - key: llava
    hub_id: llava-hf/llava-1.5-7b-hf
    modality: image-text
    load_kwargs:
      default: {}
      text: {modality: text, strategies: [undeclared]}
    recipe:
      model_type: llava
      architecture: LlavaForConditionalGeneration
      config:
        text_config: {model_type: llama, pad_token_id: 0, vocab_size: 1000, hidden_size: 64, intermediate_size: 128,
                      num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512}
        vision_config: {model_type: clip_vision_model, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
                        num_attention_heads: 2, image_size: 28, patch_size: 14, projection_dim: 32}
        image_token_index: 990
        vision_feature_layer: -2
        vision_feature_select_strategy: default
        projector_hidden_act: gelu
"""


@pytest.fixture(scope="module")
def text_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixState]:
    root = tmp_path_factory.mktemp("text")
    package = root / "textloaders_t"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(TEXT_LOADERS_PY)
    (root / "matrix.yaml").write_text(TEXT_MATRIX)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield MatrixState(load_matrix(root / "matrix.yaml"))


def test_a_text_loader_that_loads_the_text_side_exactly_passes(text_state: MatrixState) -> None:
    record = run_cell(text_state, Cell("llava", "text_loader", "default", "load"))
    assert record["status"] == "pass", record["message"]
    weights = record["details"]["weights"]
    assert weights["reinitialised"] == {"count": 0} and weights["unused"] == {"count": 0}
    assert weights["dropped"]["count"] > 20 and all("vision" in k or "projector" in k for k in weights["dropped"]["first"])
    assert record["details"]["modality"] == "text" and record["details"]["rel_diff"] < 1e-3


def test_a_text_loader_that_reinitialises_text_weights_names_them_though_transformers_reports_nothing(
        text_state: MatrixState) -> None:
    record = run_cell(text_state, Cell("llava", "text_loader_missing", "default", "load"))
    assert record["status"] == "fail" and record["details"]["missing_count"] == 0
    assert record["message"].startswith("weights newly initialised (found in the checkpoint neither by name nor by content): "
                                        "other weights: 4 tensor(s) (model.layers.1.self_attn.q_proj.weight, ")
    assert "checkpoint tensors left unused" in record["message"] and "vision" not in record["message"]
    assert "no vision tower" not in record["message"]


def test_a_text_route_declared_by_the_profile_is_judged_as_one(text_state: MatrixState) -> None:
    record = run_cell(text_state, Cell("llava", "undeclared", "text", "load"))
    assert record["status"] == "pass", record["message"]
    forward = run_cell(text_state, Cell("llava", "undeclared", "text", "forward"))
    assert forward["status"] == "pass", forward["message"]


def test_an_undeclared_text_loader_still_fails_for_its_missing_vision_tower(text_state: MatrixState) -> None:
    record = run_cell(text_state, Cell("llava", "undeclared", "default", "load"))
    assert record["status"] == "fail" and "LlamaForCausalLM has no vision tower" in record["message"]
    assert "checkpoint tensors left unused" in record["message"] and "vision tower:" in record["message"]


@pytest.mark.parametrize("where, value", [("profile", "vision"), ("strategy", "txt")])
def test_a_bad_modality_names_the_file_the_key_and_the_fix(tmp_path: Path, where: str, value: str) -> None:
    text = TEXT_MATRIX.replace("text: {modality: text", f"text: {{modality: {value}") if where == "profile" else \
        TEXT_MATRIX.replace('load_text", modality: text}', f'load_text", modality: {value}}}')
    (tmp_path / "matrix.yaml").write_text(text)
    with pytest.raises(MatrixError) as raised:
        load_matrix(tmp_path / "matrix.yaml", check_model_types=False)
    message = str(raised.value)
    assert "matrix.yaml" in message and f"modality {value!r} is not a route modality; write 'text'" in message
    assert ("models[0](llava).load_kwargs.text.modality" if where == "profile" else "strategies[1].modality") in message


def _state_with(tmp_path: Path, key: str, config: dict[str, Any] | None = None,
                add: dict[str, Any] | None = None) -> MatrixState:
    """A state whose `key` checkpoint is built from its recipe with `config` merged in, plus tensors `add`."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig

    entry = MATRIX.model(key)
    assert entry.recipe is not None
    recipe = entry.recipe.model_copy(update={"config": {**entry.recipe.config, **(config or {})}})
    built = build_checkpoint(key, recipe, entry.modality, cache_root=tmp_path / "cache")
    folder = tmp_path / key
    shutil.copytree(built.path, folder)
    if add:
        weights = folder / "model.safetensors"
        save_file({**load_file(weights), **add}, weights, metadata={"format": "pt"})
    state = MatrixState(MATRIX)
    state.checkpoints.prepared[(key, None)] = Prepared(dataclasses.replace(built, path=folder),
                                                       AutoConfig.from_pretrained(folder), InputBuilder(folder, entry.modality))
    return state


def test_a_tied_lm_head_absent_from_the_checkpoint_is_tied_not_reinitialised(tmp_path: Path) -> None:
    state = _state_with(tmp_path, "llama", {"tie_word_embeddings": True})
    from safetensors import safe_open

    with safe_open(str(tmp_path / "llama" / "model.safetensors"), "pt") as opened:
        assert "lm_head.weight" not in opened.keys()  # save_pretrained keeps one copy of tied weights
    record = run_cell(state, Cell("llama", "explicit_class", "default", "load"))
    assert record["status"] == "pass", record["message"]
    assert record["details"]["weights"]["tied"] == {"count": 1, "first": ["lm_head.weight = model.embed_tokens.weight"]}


def test_rotary_buffers_computed_by_the_model_are_no_alarm_even_when_an_old_checkpoint_stored_them(tmp_path: Path) -> None:
    import torch

    stored = {f"model.layers.{i}.self_attn.rotary_emb.inv_freq": torch.rand(8) for i in range(2)}  # early Llama files
    state = _state_with(tmp_path, "llama", add=stored)
    record = run_cell(state, Cell("llama", "explicit_class", "default", "load"))
    assert record["status"] == "pass", record["message"]
    weights = record["details"]["weights"]
    assert weights["computed"] == {"count": 1, "first": ["model.rotary_emb.inv_freq"]}
    assert weights["ignored"] == {"count": 2, "first": sorted(stored)} and weights["unused"] == {"count": 0}


def test_a_bf16_load_of_the_checkpoint_and_a_peft_wrapper_account_every_tensor(tmp_path: Path) -> None:
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    _state_with(tmp_path, "llama")
    folder = tmp_path / "llama"
    model = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    found = account(model, folder)
    assert found.reinitialised == [] and found.unused == [] and found.by_content == []
    assert len(found.by_name) == 21 and len(found.adapter) == 8  # 2 layers x 2 modules x (A, B)
    model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight.data.normal_()
    assert account(model, folder).reinitialised == ["model.layers.0.self_attn.q_proj.weight"]


class _Experts:
    """A module with 5.x's fused expert layout, and checkpoints of per-expert tensors."""

    @staticmethod
    def model(transposed: bool) -> Any:
        import torch

        module = torch.nn.Module()
        module.experts = torch.nn.Module()
        shape = (3, 8, 12) if transposed else (3, 12, 8)  # experts, 2 x intermediate (6), hidden (8)
        module.experts.gate_up_proj = torch.nn.Parameter(torch.randn(*shape))
        module.experts.down_proj = torch.nn.Parameter(torch.randn(3, 8, 6))
        return module

    @staticmethod
    def checkpoint(module: Any, folder: Path, transposed: bool) -> None:
        from safetensors.torch import save_file

        folder.mkdir()
        fused = module.experts.gate_up_proj.detach()
        fused = fused.transpose(-1, -2) if transposed else fused
        tensors = {}
        for expert in range(3):
            tensors[f"experts.{expert}.gate_proj.weight"] = fused[expert, :6].contiguous().clone()
            tensors[f"experts.{expert}.up_proj.weight"] = fused[expert, 6:].contiguous().clone()
            tensors[f"experts.{expert}.down_proj.weight"] = module.experts.down_proj.detach()[expert].clone()
        save_file(tensors, str(folder / "model.safetensors"))


@pytest.mark.parametrize("transposed", [False, True])
def test_fused_experts_are_found_as_the_per_expert_tensors_they_stack(tmp_path: Path, transposed: bool) -> None:
    module = _Experts.model(transposed)
    _Experts.checkpoint(module, tmp_path / "ckpt", transposed)
    found = account(module, tmp_path / "ckpt")
    assert found.reinitialised == [] and found.unused == []
    assert found.fused == ["experts.gate_up_proj <- experts.0.gate_proj.weight + 5 more",
                           "experts.down_proj <- experts.0.down_proj.weight + 2 more"]
    with __import__("torch").no_grad():
        module.experts.gate_up_proj[1].normal_()  # one expert re-initialised
    found = account(module, tmp_path / "ckpt")
    assert found.reinitialised == ["experts.gate_up_proj"]
    assert sorted(found.unused) == sorted(f"experts.{e}.{p}_proj.weight" for e in range(3) for p in ("gate", "up"))


def test_fused_experts_stored_with_their_last_two_axes_swapped_are_found_transposed(tmp_path: Path) -> None:
    """5.x keeps Qwen3-VL-MoE's experts (experts, out, in) and reads 4.57's and the hub's (experts, in, out)
    through a Transpose converter: the same key, the values transposed, is found, not re-initialised."""
    import torch
    from safetensors.torch import save_file

    module = _Experts.model(transposed=True)
    (tmp_path / "ckpt").mkdir()
    stored = {name: p.detach().transpose(-1, -2).contiguous().clone() for name, p in module.named_parameters()}
    save_file(stored, str(tmp_path / "ckpt" / "model.safetensors"))
    found = account(module, tmp_path / "ckpt")
    assert found.reinitialised == [] and found.unused == []
    assert found.transposed == ["experts.gate_up_proj <- experts.gate_up_proj", "experts.down_proj <- experts.down_proj"]
    with torch.no_grad():
        module.experts.down_proj[0].normal_()  # another expert's values: found nowhere
    found = account(module, tmp_path / "ckpt")
    assert found.reinitialised == ["experts.down_proj"] and found.unused == ["experts.down_proj"]
