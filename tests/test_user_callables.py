"""The user's own strategies and probes (`{name, callable}` in matrix.yaml): validated, imported in the
environment, checked like built-in ones, recorded with their import path and package version."""

from __future__ import annotations

from pathlib import Path

import pytest

from compat_matrix.spec.cells import Cell
from compat_matrix.spec.validate import MatrixError, load_matrix
from compat_tests.execute import MatrixState, run_cell
from compat_tests.user_code import provenance

MATRIX = """\
transformers: [4.57.6]
strategies:
  - smart
  - {name: my_loader, callable: "mytrainer_t.models:load_policy"}
  - {name: reinit_head, callable: "mytrainer_t.models:load_and_reset_head"}
  - {name: broken, callable: "not_installed_pkg.models:load"}
probes:
  - load
  - {name: one_step, callable: "mytrainer_t.checks:one_step"}
  - {name: says_no, callable: "mytrainer_t.checks:says_no", mutates_model: false}
  - {name: raises, callable: "mytrainer_t.checks:raises"}
  - {name: odd_return, callable: "mytrainer_t.checks:odd_return"}
expectations:
  - {status: fail, strategies: [reinit_head], probes: [load], reason: planted}
models:
  - key: llama
    hub_id: meta-llama/Llama-3.2-1B-Instruct
    modality: text
    recipe:
      model_type: llama
      architecture: LlamaForCausalLM
      config: {vocab_size: 1000, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
               num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512}
"""

MODELS_PY = '''
import transformers

SEEN = []

def load_policy(path, **kwargs):
    SEEN.append(path)
    return transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs)

def load_and_reset_head(path, **kwargs):
    model = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.lm_head.weight.data.normal_()  # what a wrong class or a renamed tensor does, silently
    return model
'''

CHECKS_PY = '''
import torch
from compat_matrix.spec.user import ProbeResult

def one_step(ctx):
    model = ctx.model.train()
    out = model(**ctx.inputs, labels=ctx.inputs["input_ids"])
    out.loss.backward()
    return ProbeResult(passed=bool(torch.isfinite(out.loss)), details={"loss": float(out.loss), "device": ctx.device,
                       "hub_id": ctx.hub_id, "has_tokenizer": ctx.tokenizer is not None, "dtype": ctx.dtype})

def says_no(ctx):
    return False

def raises(ctx):
    raise RuntimeError("the trainer's step broke")

def odd_return(ctx):
    return "yes"
'''


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> MatrixState:
    root = tmp_path_factory.mktemp("user")
    package = root / "mytrainer_t"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(MODELS_PY)
    (package / "checks.py").write_text(CHECKS_PY)
    (root / "matrix.yaml").write_text(MATRIX)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield MatrixState(load_matrix(root / "matrix.yaml"))


def cell(strategy: str, probe: str) -> Cell:
    return Cell("llama", strategy, "default", probe)


def test_a_user_loader_is_called_with_a_path_named_after_the_hub_id_and_checked_like_any_strategy(state: MatrixState) -> None:
    import mytrainer_t.models  # type: ignore[import-not-found]

    record = run_cell(state, cell("my_loader", "load"))
    assert record["status"] == "pass", record["message"]
    assert record["load_path"] == "callable:mytrainer_t.models:load_policy" and record["loaded_class"] == "LlamaForCausalLM"
    assert mytrainer_t.models.SEEN[-1].endswith("/meta-llama/Llama-3.2-1B-Instruct")
    assert record["callables"] == {"strategy": {"callable": "mytrainer_t.models:load_policy", "package": None, "version": None}}


def test_a_user_loader_that_silently_reinitialises_weights_fails_the_load_probe(state: MatrixState) -> None:
    record = run_cell(state, cell("reinit_head", "load"))
    assert record["status"] == "fail", record["message"]
    assert record["message"].startswith("weights newly initialised (found in the checkpoint neither by name nor by content): "
                                        "LM head: 1 tensor(s) (lm_head.weight)")
    assert record["details"]["missing_count"] == 0  # transformers' report: nothing
    assert record["details"]["weights"]["reinitialised"] == {"count": 1, "first": ["lm_head.weight"]}


def test_a_module_that_does_not_import_is_an_error_naming_it_and_other_cells_still_run(state: MatrixState) -> None:
    record = run_cell(state, cell("broken", "load"))
    assert record["status"] == "error" and "cannot import not_installed_pkg.models" in record["message"]
    assert "install:" in record["message"]
    assert run_cell(state, cell("smart", "load"))["status"] == "pass"


def test_user_probes_pass_fail_raise_and_record_their_callable(state: MatrixState) -> None:
    passed = run_cell(state, cell("smart", "one_step"))
    assert passed["status"] == "pass", passed["message"]
    assert passed["details"]["hub_id"] == "meta-llama/Llama-3.2-1B-Instruct" and passed["details"]["has_tokenizer"]
    assert passed["details"]["dtype"] == "torch.float32"  # not JSON: kept as its string
    assert passed["callables"] == {"probe": {"callable": "mytrainer_t.checks:one_step", "package": None, "version": None}}
    no = run_cell(state, cell("smart", "says_no"))
    assert no["status"] == "fail" and no["message"] == "mytrainer_t.checks:says_no returned False"
    raised = run_cell(state, cell("smart", "raises"))
    assert raised["status"] == "fail" and raised["error_type"] == "RuntimeError" and "broke" in raised["message"]
    odd = run_cell(state, cell("my_loader", "odd_return"))
    assert odd["status"] == "error" and "return a bool or a compat_matrix.spec.user.ProbeResult" in odd["message"]
    assert set(odd["callables"]) == {"strategy", "probe"}


def test_provenance_names_the_distribution_and_its_version() -> None:
    from importlib.metadata import version

    assert provenance("yaml:safe_load") == {"callable": "yaml:safe_load", "package": "PyYAML", "version": version("PyYAML")}


@pytest.mark.parametrize(("old", "new", "says"), [
    ('"mytrainer_t.models:load_policy"', '"mytrainer_t/models.py"', "strategies[1].callable: 'mytrainer_t/models.py' is not an import path"),
    ("name: my_loader,", "name: smart,", "strategies: ['smart']: a strategy of your own needs a name of its own"),
    ("name: one_step,", "name: raises,", "probes: probe names listed twice: ['raises']"),
    ("strategies: [reinit_head]", "strategies: [reinit_hed]", "unknown strategy ['reinit_hed']"),
])
def test_bad_callable_entries_are_located_problems(tmp_path: Path, old: str, new: str, says: str) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX.replace(old, new))
    with pytest.raises(MatrixError) as caught:
        load_matrix(path)
    assert any(says in str(p) for p in caught.value.problems), caught.value.problems
