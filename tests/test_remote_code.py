"""Remote-code models: a tiny checkpoint that ships its own modeling files with `auto_map`, refused
without `trust_remote_code`, and whose cells show where the transformers internals it imports moved."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import transformers
from packaging.version import Version

from compat_matrix.spec.cells import Cell
from compat_matrix.spec.schema import Matrix, ModelEntry
from compat_matrix.spec.validate import MatrixError, load_matrix
from compat_tests.execute import MatrixState, Prepared, run_cell
from compat_tests.tiny import checkpoint as tiny
from compat_tests.tiny import remote_code
from compat_tests.tiny.checkpoint import TinyCheckpoint, build_checkpoint
from compat_tests.tiny.inputs import InputBuilder

ENTRY = """\
transformers: [4.57.6]
models:
  - key: remote_decoder
    hub_id: internlm/internlm3-8b-instruct
    modality: text
    trust_remote_code: true
    recipe:
      model_type: tiny_decoder
      architecture: TinyDecoderForCausalLM
      remote_code:
        sources: tiny_decoder
        twin: LlamaForCausalLM
        auto_map: {AutoConfig: configuration_tiny_decoder.TinyDecoderConfig,
                   AutoModel: modeling_tiny_decoder.TinyDecoderModel,
                   AutoModelForCausalLM: modeling_tiny_decoder.TinyDecoderForCausalLM}
      config: {vocab_size: 1000, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
               num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512}
"""

RELEASE = Version(transformers.__version__)

KNOWN_OUTCOMES = {
    "4.49.0": ("pass", ""),
    "4.57.6": ("pass", ""),
    "5.0.0": ("fail", "KeyError: 'default'"),
    "5.24.0": ("fail", "No module named 'transformers.modeling_attn_mask_utils'"),
}
"""What the load cell of this 4.48/4.49-era remote code does in the releases we measured: 5.0
dropped `ROPE_INIT_FUNCTIONS["default"]` (the model cannot be built), and by 5.24
`transformers.modeling_attn_mask_utils` is gone (the modeling file cannot be imported)."""


def matrix_of(tmp_path: Path, text: str = ENTRY) -> Matrix:
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return load_matrix(path, check_model_types=False)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(MatrixError) as caught:
        matrix_of(tmp_path, text)
    return [str(p) for p in caught.value.problems]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelEntry, TinyCheckpoint]:
    """The remote-code checkpoint, built once for the module (about 1 s)."""
    root = tmp_path_factory.mktemp("remote")
    entry = matrix_of(root).model("remote_decoder")
    assert entry.recipe is not None
    return entry, build_checkpoint(entry.key, entry.recipe, entry.modality, cache_root=root / "cache")


def state_for(entry: ModelEntry, folder: Path, checkpoint: TinyCheckpoint) -> MatrixState:
    """A harness state whose checkpoint of `entry` is `folder` (its config read with remote code allowed)."""
    state = MatrixState(Matrix.model_construct(transformers=("4.57.6",), models=(entry,)))  # entry as given
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True)
    state.checkpoints.prepared[(entry.key, None)] = Prepared(TinyCheckpoint(checkpoint.key, folder, checkpoint.recipe_hash,
                                                        checkpoint.transformers_version, checkpoint.reference),
                                         config, InputBuilder(folder, entry.modality))
    return state


def cell(state: MatrixState, strategy: str = "auto_causal_lm", probe: str = "load") -> dict[str, Any]:
    return run_cell(state, Cell("remote_decoder", strategy, "default", probe))


def test_an_entry_without_trust_remote_code_is_refused_naming_the_key(tmp_path: Path) -> None:
    found = problems(tmp_path, ENTRY.replace("    trust_remote_code: true\n", ""))
    assert len(found) == 1, found
    assert "models[0](remote_decoder)" in found[0] and "add 'trust_remote_code: true'" in found[0]
    found = problems(tmp_path, ENTRY.replace("trust_remote_code: true", "trust_remote_code: false"))
    assert "add 'trust_remote_code: true' to this model entry" in found[0]


@pytest.mark.parametrize(("change", "says"), [
    (("architecture: TinyDecoderForCausalLM", "architecture: TinyDecoderForMaskedLM"),
     "architecture 'TinyDecoderForMaskedLM' is none of the classes remote_code.auto_map names"),
    (("{AutoConfig: configuration_tiny_decoder.TinyDecoderConfig,", "{"), "auto_map needs an 'AutoConfig' entry"),
    (("sources: tiny_decoder", "sources: no_such_code"), "no folder 'no_such_code' in compat_tests/remote_code/; there: tiny_decoder"),
], ids=["architecture-not-in-auto-map", "no-auto-config", "unknown-sources"])
def test_a_bad_remote_code_recipe_is_located(tmp_path: Path, change: tuple[str, str], says: str) -> None:
    text = ENTRY.replace(*change)
    assert text != ENTRY
    found = problems(tmp_path, text)
    assert any("models[0](remote_decoder).recipe" in p and says in p for p in found), found


def test_the_folder_is_a_remote_code_hub_repo(built: tuple[ModelEntry, TinyCheckpoint]) -> None:
    entry, checkpoint = built
    names = {p.name for p in checkpoint.path.iterdir()}
    assert {"configuration_tiny_decoder.py", "modeling_tiny_decoder.py", "model.safetensors", "tokenizer.json"} <= names
    config = json.loads((checkpoint.path / "config.json").read_text())
    assert config["model_type"] == "tiny_decoder" and config["architectures"] == ["TinyDecoderForCausalLM"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_tiny_decoder.TinyDecoderForCausalLM"
    assert checkpoint.reference["reference_class"] == "LlamaForCausalLM"
    assert not any(checkpoint.reference["loading_info"].values())
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        transformers.AutoConfig.from_pretrained(checkpoint.path, trust_remote_code=False)


def test_editing_the_remote_code_gives_a_new_checkpoint(built: tuple[ModelEntry, TinyCheckpoint], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    entry, checkpoint = built
    assert entry.recipe is not None
    edited = tmp_path / "tiny_decoder"
    shutil.copytree(remote_code.REMOTE_CODE_ROOT / "tiny_decoder", edited)
    (edited / "modeling_tiny_decoder.py").write_text((edited / "modeling_tiny_decoder.py").read_text() + "\n# edited\n")
    monkeypatch.setattr(remote_code, "REMOTE_CODE_ROOT", tmp_path)
    assert tiny.recipe_hash(entry.recipe, entry.modality) != checkpoint.recipe_hash


def test_without_trust_remote_code_the_load_cell_fails_with_transformers_refusal(
        built: tuple[ModelEntry, TinyCheckpoint]) -> None:
    entry, checkpoint = built
    untrusted = entry.model_copy(update={"trust_remote_code": False})  # as if validation had been bypassed
    state = state_for(untrusted, checkpoint.path, checkpoint)
    for strategy in ("auto_causal_lm", "explicit_class"):
        record = cell(state, strategy)
        assert record["status"] == "fail"
        assert record["error_type"] == "ValueError" and "trust_remote_code=True" in record["message"], record["message"]


def test_an_import_of_a_name_transformers_lacks_fails_the_load_naming_it(
        built: tuple[ModelEntry, TinyCheckpoint], tmp_path: Path) -> None:
    entry, checkpoint = built
    folder = tmp_path / "remote_decoder-planted-import"
    shutil.copytree(checkpoint.path, folder)
    modeling = folder / "modeling_tiny_decoder.py"
    source = modeling.read_text()
    line = "from transformers.cache_utils import Cache, DynamicCache, StaticCache\n"
    assert line in source
    modeling.write_text(source.replace(line, "from transformers.cache_utils import Cache, DynamicCache, NoSuchCache\n"))
    record = cell(state_for(entry, folder, checkpoint))
    assert record["status"] == "fail"
    assert record["error_type"] == "ImportError"
    assert "cannot import name 'NoSuchCache' from 'transformers.cache_utils'" in record["message"]


@pytest.mark.skipif(transformers.__version__ not in KNOWN_OUTCOMES,
                    reason=f"outcome of the remote code not measured in transformers {transformers.__version__}")
def test_the_load_cell_shows_what_this_release_does_with_the_remote_code(built: tuple[ModelEntry, TinyCheckpoint]) -> None:
    entry, checkpoint = built
    state = state_for(entry, checkpoint.path, checkpoint)
    status, says = KNOWN_OUTCOMES[transformers.__version__]
    record = cell(state)
    assert record["status"] == status, record["message"]
    assert says in f"{record['error_type']}: {record['message']}"
    smart = cell(state, "smart")
    assert smart["status"] == status
    if status == "pass":
        assert record["loaded_class"] == "TinyDecoderForCausalLM" and record["details"]["rel_diff"] < 1e-3
        assert smart["load_path"] == "remote_code:AutoModelForCausalLM"
    assert cell(state, "explicit_class")["status"] == "unsupported"  # TinyDecoderForCausalLM is no transformers class
