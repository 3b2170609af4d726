"""matrix.yaml validation: one located, actionable message per problem, never a traceback."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from compat_matrix.cli import main
from compat_matrix.spec.schema import Matrix
from compat_matrix.spec.validate import DEFAULT_MATRIX, MatrixError, load_matrix

GOOD = """\
transformers: [4.57.6, latest]
models:
  - key: llama
    hub_id: meta-llama/Llama-3.2-1B-Instruct
    modality: text
    recipe: {model_type: llama, architecture: LlamaForCausalLM, config: {hidden_size: 64}}
"""


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    with pytest.raises(MatrixError) as caught:
        load_matrix(path)
    return [str(p) for p in caught.value.problems]


def test_the_default_matrix_is_valid() -> None:
    matrix = load_matrix(DEFAULT_MATRIX)
    keys = {m.key for m in matrix.models}
    assert {"llama", "qwen2", "qwen3", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "gemma3", "llava", "paligemma"} <= keys
    assert {"4.49.0", "4.51.3", "4.52.4", "5.0.0", "latest"} <= set(matrix.transformers)
    assert any(v.startswith("4.57.") for v in matrix.transformers)


def test_a_good_file_loads_into_frozen_objects(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(GOOD)
    matrix = load_matrix(path)
    assert matrix.models[0].recipe and matrix.models[0].recipe.config == {"hidden_size": 64}
    with pytest.raises(Exception):
        matrix.models[0].key = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        (("    modality: text", "    modality: text\n    colour: blue"), "m.yaml:6: models[0](llama).colour", "unknown key"),
        (("    modality: text", "    modality: txt"), "m.yaml:5: models[0](llama).modality", "'text' or 'image-text'"),
        (("[4.57.6, latest]", "[4.57.x, latest]"), "m.yaml:1: transformers", "exact version"),
        (("config: {hidden_size: 64}}", "config: {hidden_size: 64}}\n    expectations:\n      - {status: fail, transformers: '=>5', reason: r}"),
         "models[0](llama).expectations[0].transformers", "PEP 440"),
        (("config: {hidden_size: 64}}", "config: {hidden_size: 64}}\n    expectations:\n      - {status: fail, saved_by: '5.x', reason: r}"),
         "models[0](llama).expectations[0].saved_by", "PEP 440"),
        (("config: {hidden_size: 64}}", "config: {hidden_size: 64}}\n    expectations:\n      - {status: fail, libraries: {pef: '<1'}, reason: r}"),
         "models[0](llama).expectations[0].libraries.pef", "unknown key"),
        (("config: {hidden_size: 64}}", "config: {hidden_size: 64}}\n    expectations:\n      - {status: fail, libraries: {peft: '0.22'}, reason: r}"),
         "models[0](llama).expectations[0].libraries.peft", "PEP 440"),
        (("models:", "strategies: [auto_model, auto_magic]\nmodels:"), "m.yaml:2: strategies", "auto_magic"),
        (("models:", "probes: [load, fly]\nmodels:"), "m.yaml:2: probes", "fly"),
        (("model_type: llama,", "model_type: lama,"), "models[0](llama).recipe.model_type", "did you mean llama"),
        (("    modality: text", "    modality: text\n    modality: image-text"), "m.yaml:6: models[0](llama).modality", "duplicate key"),
        (("    hub_id: meta-llama/Llama-3.2-1B-Instruct\n", ""), "models[0](llama).hub_id", "field required"),
        (("    recipe:", "    source: hub\n    recipe:"), "models[0](llama)", "pinned 'revision'"),
        (("    recipe:", "    source: hub\n    revision: main\n    recipe:"), "models[0](llama)", "is a branch"),
        (("    modality: text", "    modality: text\n    written_by: 4.49.0.dev0"), "m.yaml:6: models[0](llama).written_by",
         "became 4.49.0"),
        (("    recipe:", "    source: hub\n    revision: abc123\n    written_by: 4.49.0\n    recipe:"), "models[0](llama)",
         "already as published"),
    ],
    ids=["unknown-key", "wrong-literal", "bad-release", "bad-specifier", "bad-saved-by", "unknown-library",
         "bad-library-range", "unknown-strategy", "unknown-probe",
         "unknown-model-type", "duplicate-key", "missing-field", "hub-without-revision",
         "hub-on-a-branch", "written-by-dev-version", "written-by-on-a-hub-entry"],
)
def test_each_problem_is_located_and_says_what_is_allowed(tmp_path: Path, change: tuple[str, str], where: str, says: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    found = problems_of(tmp_path, text)
    assert any(where.replace("m.yaml", str(tmp_path / "matrix.yaml")) in p and says.lower() in p.lower() for p in found), found


def test_duplicate_model_keys_are_refused(tmp_path: Path) -> None:
    text = GOOD + GOOD.split("models:\n")[1]
    found = problems_of(tmp_path, text)
    assert any("listed twice: ['llama']" in p for p in found), found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("modality: text", "modality: txt\n    colour: blue").replace("[4.57.6, latest]", "[4.57.x]")
    assert len(problems_of(tmp_path, text)) == 3


def test_not_yaml_names_the_line(tmp_path: Path) -> None:
    found = problems_of(tmp_path, GOOD + "  - key: [unclosed\n")
    assert len(found) == 1 and "not valid YAML" in found[0] and "matrix.yaml:8:" in found[0]


def test_cli_validate_exits_2_with_the_problems_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_text(GOOD.replace("modality: text", "modality: txt"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "models[0](llama).modality" in err and "Traceback" not in err
    assert main(["validate", str(DEFAULT_MATRIX)]) == 0


def _with_expectations(tmp_path: Path, own: str, top: str) -> Matrix:
    """GOOD with one expectation of llama's own and one top-level (each a YAML flow mapping)."""
    path = tmp_path / "m.yaml"
    path.write_text(GOOD.replace("config: {hidden_size: 64}}", f"config: {{hidden_size: 64}}}}\n    expectations:\n      - {own}")
                    + f"expectations:\n  - {top}\n")
    return load_matrix(path)


def test_expectation_lookup_prefers_the_models_own_and_respects_ranges(tmp_path: Path) -> None:
    matrix = _with_expectations(tmp_path, "{status: fail, transformers: '<5', strategies: [auto_model], reason: own}",
                                "{status: unsupported, strategies: [auto_model], reason: global}")
    entry = matrix.models[0]
    assert matrix.expectation_for(entry, "4.57.6", "auto_model", "load", "default").reason == "own"
    assert matrix.expectation_for(entry, "5.0.0", "auto_model", "load", "default").reason == "global"
    assert matrix.expectation_for(entry, "5.0.0", "smart", "load", "default") is None


def test_a_saved_by_expectation_covers_only_checkpoints_of_those_releases(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(GOOD + "expectations:\n"
                    "  - {status: fail, transformers: '<5', saved_by: '>=5', reason: 5.x tokenizer files}\n"
                    "  - {status: unsupported, strategies: [auto_model], reason: any checkpoint}\n")
    matrix = load_matrix(path)
    entry = matrix.models[0]

    def reason(version: str, saved_by: str | None, strategy: str = "smart") -> str | None:
        found = matrix.expectation_for(entry, version, strategy, "load", "default", saved_by)
        return found.reason if found else None

    assert reason("4.57.6", "5.24.0") == "5.x tokenizer files"
    assert reason("4.57.6", "4.49.0") is None  # saved by a release outside the range
    assert reason("4.57.6", None) is None  # a same-release cell is never a cross-release one
    assert reason("5.0.0", "5.24.0") is None  # loaded by a release outside `transformers`
    assert reason("4.57.6", "4.49.0", "auto_model") == "any checkpoint"  # no saved_by: own or another's
    assert reason("4.57.6", None, "auto_model") == "any checkpoint"


def test_a_libraries_expectation_covers_only_lines_whose_library_is_in_its_range(tmp_path: Path) -> None:
    matrix = _with_expectations(tmp_path, "{status: fail, libraries: {peft: '<0.22.0'}, reason: old peft drops keys}",
                                "{status: fail, reason: every peft}")
    entry = matrix.models[0]

    def reason(libraries: dict[str, str | None] | None) -> str | None:
        found = matrix.expectation_for(entry, "5.24.0", "smart", "adapter_roundtrip", "default", None, libraries)
        return found.reason if found else None

    assert reason({"peft": "0.21.2", "trl": "1.16.0"}) == "old peft drops keys"
    assert reason({"peft": "0.22.0", "trl": "1.16.0"}) == "every peft"  # the fixed peft: the next one decides
    assert reason({"peft": None}) == "every peft"  # not installed: outside any range
    assert reason({}) == "every peft"
    assert reason({"peft": "not-a-version"}) == "every peft"
    assert reason(None) == "old peft drops keys"  # versions not known (bisect's spec cells): the range does not narrow


def test_olmoe_fails_to_read_its_config_in_5_4_0_only_with_a_hub_from_1_9_0() -> None:
    """The hub is recorded like the training libraries: a 5.4.0 environment pinned to huggingface_hub 1.8.0
    reads OLMoE's config, so a failure there is a regression, not the recorded cause."""
    matrix = load_matrix(DEFAULT_MATRIX, check_model_types=False)
    olmoe = matrix.model("olmoe")

    def expected(release: str, hub: str | None) -> str | None:
        found = matrix.expectation_for(olmoe, release, "smart", "load", "default", None, {"huggingface_hub": hub})
        return found.status if found else None

    assert expected("5.4.0", "1.9.0") == expected("5.4.0", "1.33.0") == "fail"
    assert expected("5.4.0", "1.8.0") is None and expected("5.4.0", None) is None
    assert expected("5.5.0", "1.33.0") is None


def test_for_a_cross_release_cell_a_saved_by_expectation_wins_over_the_models_own(tmp_path: Path) -> None:
    matrix = _with_expectations(tmp_path, "{status: unsupported, strategies: [explicit_class], reason: own}",
                                "{status: fail, saved_by: '>=5', reason: unreadable tokenizer}")
    entry = matrix.models[0]
    assert matrix.expectation_for(entry, "4.57.6", "explicit_class", "load", "default", "5.0.0").reason == "unreadable tokenizer"
    assert matrix.expectation_for(entry, "4.57.6", "explicit_class", "load", "default", "4.49.0").reason == "own"
    assert matrix.expectation_for(entry, "4.57.6", "explicit_class", "load", "default").reason == "own"


@pytest.mark.parametrize(("planted", "where", "bad", "registry"), [
    ("strategies: [auto_model, auto_magic]\n", "strategies", "auto_magic", "loader.strategies:STRATEGIES"),
    ("probes: [load, fly]\n", "probes", "fly", "reports.status:PROBE_ORDER"),
    ("settings: {grpo: {reward: entropy}}\n", "settings.grpo.reward", "entropy", "compat_tests.rewards:REWARDS"),
], ids=["strategy", "probe", "reward"])
def test_a_name_no_registry_implements_is_refused_naming_the_registrys_names(
        tmp_path: Path, planted: str, where: str, bad: str, registry: str) -> None:
    """The allowed names are the registries' own (loader.STRATEGIES; PROBE_ORDER, from which
    compat_tests.probes.PROBES imports each probe's module; compat_tests.rewards.REWARDS), not a copy."""
    module, _, name = registry.partition(":")
    names = list(getattr(importlib.import_module(module), name))
    [found] = [p for p in problems_of(tmp_path, GOOD.replace("models:", planted + "models:")) if where in p]
    assert f"{bad!r}" in found and f"allowed: {', '.join(names)}" in found, found
