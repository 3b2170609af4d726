"""`compat-matrix repro`: scripts that need nothing of ours, and a verdict that can say "does not reproduce".

Two scripts really run here (the unit env has transformers 4.57.6): the VLM-R1 break reproduces, and
a planted harness failure (a forward cell failing as a broken probe would) is reported as not reproduced.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from compat_matrix.repro.script import INIT_STD, NoTemplate, Target, write_script
from compat_matrix.repro.verify import CellOutcome, ScriptRun, judge, parse_failure, run_script
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.validate import DEFAULT_MATRIX, MatrixError, load_matrix
from reports.signature import UNREADABLE_PREFIX, inner_error

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)
NAMES = [n for m in MATRIX.models for n in (m.key, m.hub_id)]

KINDS = {
    "qwen2_5_vl-auto_causal_lm-default-load": "4.57.6",  # a loading route refused (VLM-R1)
    "qwen2_vl-auto_image_text_to_text-trainer-load": "5.24.0",  # a keyword argument refused
    "qwen2_5_vl-auto_image_text_to_text-default-forward": "5.24.0",  # minimal inputs, other logits
    "qwen2_vl-smart-lora_vision-grpo_step": "4.57.6",  # a training-step check
    "llama-explicit_class-default-load@5.24.0": "4.57.6",  # a checkpoint another release wrote
}
ALLOWED_IMPORTS = {"collections", "inspect", "json", "re", "sys", "tempfile", "torch", "transformers", "tokenizers", "peft",
                   "safetensors"}
SAME_RELEASE_LINES = 81
"""Under about 80 lines (issue 25): the longest the default matrix can have is 81 (Mllama's smart trainer-profile
GRPO step: its image rows, its tiles and cross-attention mask over the completion)."""


def script(cell_id: str, release: str, good: str | None = None):
    return write_script(Target(MATRIX, Cell.from_id(cell_id), release, good))  # type: ignore[arg-type]


def imported(text: str) -> set[str]:
    tree = ast.parse(text)
    found = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return found | {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


@pytest.mark.parametrize("cell_id", sorted(KINDS))
def test_each_kind_gets_a_self_contained_script_with_its_pins(cell_id: str) -> None:
    written = script(cell_id, KINDS[cell_id])
    assert imported(written.text) <= ALLOWED_IMPORTS, "a script imports nothing of compat-matrix"
    header = written.text.split("# ///")[1]
    assert f'"transformers=={KINDS[cell_id]}"' in header and '"torch==2.13.0"' in header
    assert ('"peft"' in header) == ("lora" in cell_id), "peft only where the cell needs it"
    assert '"trl"' not in header
    assert cell_id in written.text
    assert ("Run: uv run" in written.text) or ("write ckpt" in written.text)
    assert written.steps == ((("write",), ("read",)) if "@" in cell_id else ((),))


def test_every_script_the_default_matrix_can_have_compiles() -> None:
    """Same-release cells in 4.57.6 and cells on 5.24.0's checkpoints: each written script is valid Python."""
    from compat_matrix.spec.cells import select_cells

    written = 0
    for saved_by in (None, ["5.24.0"]):
        for cell in select_cells(MATRIX, saved_by=saved_by):
            try:
                text = write_script(Target(MATRIX, cell, "4.57.6")).text
            except NoTemplate:
                continue
            ast.parse(text, filename=cell.id)
            written += 1
    assert written > 100


def test_the_recipe_config_is_inline_with_the_builds_init_std() -> None:
    from compat_tests.tiny.checkpoint import INIT_STD as BUILD_INIT_STD

    assert INIT_STD == BUILD_INIT_STD
    text = script("qwen2_5_vl-auto_causal_lm-default-load", "4.57.6").text
    assert '"mrope_section": [2, 3, 3]' in text and '"initializer_range": 0.1' in text
    assert "torch.manual_seed(0)" in text


def test_the_expectation_reason_and_link_head_the_script() -> None:
    text = script("qwen2_vl-smart-lora_vision-grpo_step", "4.57.6", good="5.24.0").text
    assert "passes in 5.24.0" in text and "https://github.com/huggingface/peft/issues/2880" in text


@pytest.mark.parametrize("cell_id, why", [
    ("remote_decoder-auto_causal_lm-default-load", "runs the checkpoint.s own modeling code"),
    ("llama-explicit_class-default-trl_grpo", "trl_grpo runs TRL's GRPOTrainer, at the TRL release the environment chose"),
    ("llama-explicit_class-default-grpo_step@5.24.0", "no script template for grpo_step"),
    ("gemma3-explicit_class-default-forward", "no script template builds gemma3 image inputs for forward"),
    ("idefics3-smart-lora-grpo_step", "no script template builds idefics3 image inputs for grpo_step"),
    ("qwen3_vl-smart-default-grpo_step", "no script template for grpo_step"),
])
def test_cells_without_a_template_say_why(cell_id: str, why: str) -> None:
    with pytest.raises(NoTemplate, match=why):
        script(cell_id, "4.57.6")


def test_the_failure_line_is_read_back_with_multiline_messages() -> None:
    assert parse_failure("x\ngot: ValueError: Unrecognized class\nModel type should be one of A, B\n") == (
        "ValueError", "Unrecognized class\nModel type should be one of A, B")
    assert parse_failure("ok: the behaviour is right\n") == (None, "")
    assert parse_failure("got: CheckFailed: grad_adapter: 4 of 4") == ("CheckFailed", "grad_adapter: 4 of 4")


def test_an_exception_is_read_from_the_last_traceback_without_its_module() -> None:
    """A script lets an exception end it: Python's traceback on stderr is what it got."""
    output = ("expected: it loads\nTraceback (most recent call last):\n  File \"r.py\", line 3, in <module>\n    x()\n"
              "KeyError: 'a'\n\nDuring handling of the above exception, another exception occurred:\n\n"
              "Traceback (most recent call last):\n  File \"r.py\", line 5, in <module>\n    load()\n    ^^^^^^\n"
              "peft.tuners.tuners_utils.NoMatchingPeftModuleError: Target modules x not found\nPlease check\n")
    assert parse_failure(output) == ("NoMatchingPeftModuleError", "Target modules x not found\nPlease check")
    assert parse_failure("Traceback (most recent call last):\n  File \"r.py\", line 1\nStopIteration\n") == ("StopIteration", "")


def test_an_unreadable_checkpoint_is_compared_by_the_librarys_own_error() -> None:
    wrapped = UNREADABLE_PREFIX.format(saved_by="5.24.0") + "ValueError: Tokenizer class TokenizersBackend does not exist"
    assert inner_error("CellFailed", wrapped) == ("ValueError", "Tokenizer class TokenizersBackend does not exist")
    assert inner_error("TypeError", "plain") == ("TypeError", "plain")
    harness = (Path(__file__).parents[1] / "compat_tests" / "execute.py").read_text()
    assert f'f"{UNREADABLE_PREFIX}{{what}}"' in harness, "the harness words it as reports/signature.py says"


def run(release: str, code: int, error_type: str | None = None, message: str = "") -> ScriptRun:
    return ScriptRun(release, code, error_type, message, "")


CELL_FAIL = CellOutcome("fail", "TypeError", "Qwen2VLForConditionalGeneration.__init__() got an unexpected keyword argument 'use_cache'")


def test_same_signature_in_the_release_and_a_pass_on_good_is_verified() -> None:
    bad = run("5.24.0", 1, "TypeError", "Qwen2_5_VLForConditionalGeneration.__init__() got an unexpected keyword argument 'use_cache'")
    verdict = judge("c", "load", False, NAMES, CELL_FAIL, bad, run("4.57.6", 0))
    assert verdict.verified and "reproduces in 5.24.0" in verdict.summary and "passes in 4.57.6" in verdict.summary


def test_another_cause_or_a_failing_good_release_is_not_verified() -> None:
    other = judge("c", "load", False, NAMES, CELL_FAIL, run("5.24.0", 1, "TypeError", "got an unexpected keyword argument 'dtype'"), None)
    assert not other.verified and "does NOT reproduce the cause" in other.summary
    bad = run("5.24.0", 1, CELL_FAIL.error_type, CELL_FAIL.message)
    both = judge("c", "load", False, NAMES, CELL_FAIL, bad, run("4.57.6", 1, "TypeError", "x"))
    assert both.reproduced and not both.verified and "does not pass in 4.57.6 either" in both.summary


def python_env(tmp_path: Path, release: str) -> Path:
    """A tox work folder whose env for `release` is this interpreter (the unit env: transformers 4.57.6)."""
    import transformers

    if transformers.__version__ != release:
        pytest.skip(f"the unit env has transformers {transformers.__version__}, not {release}")
    env = tmp_path / "tox" / f"tf{release.replace('.', '_')}"
    (env / "bin").mkdir(parents=True)
    # a wrapper, not a link: a linked venv python outside its venv finds no pyvenv.cfg and loses its site-packages
    (env / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (env / "bin" / "python").chmod(0o755)
    site = env / "lib" / "python3.11" / "site-packages"  # what release_python looks for (this interpreter has it)
    for name in (f"transformers-{release}.dist-info", "torch"):
        (site / name).mkdir(parents=True)
    return tmp_path / "tox"


def test_the_vlm_r1_script_reproduces_the_cell(tmp_path: Path) -> None:
    workdir = python_env(tmp_path, "4.57.6")
    written = script("qwen2_5_vl-auto_causal_lm-default-load", "4.57.6")
    path = tmp_path / "repro.py"
    path.write_text(written.text)
    outcome = CellOutcome("fail", "ValueError", "Unrecognized configuration class <class 'transformers.models.qwen2_5_vl."
                                                "configuration_qwen2_5_vl.Qwen2_5_VLConfig'> for this kind of AutoModel: "
                                                "AutoModelForCausalLM.\nModel type should be one of ...")
    ran = run_script(written, path, "4.57.6", "4.57.6", None, workdir)
    verdict = judge("qwen2_5_vl-auto_causal_lm-default-load", "load", False, NAMES, outcome, ran, None)
    assert verdict.verified, verdict.summary + ran.output


def test_a_planted_harness_failure_is_reported_as_not_reproduced(tmp_path: Path) -> None:
    """The forward cell as a broken probe reports it (its manual inputs dropped image_grid_thw): the
    script, doing the probe's work right, passes in 4.57.6, so the failure is ours."""
    workdir = python_env(tmp_path, "4.57.6")
    written = script("qwen2_5_vl-auto_image_text_to_text-default-forward", "4.57.6")
    path = tmp_path / "repro.py"
    path.write_text(written.text)
    planted = CellOutcome("fail", "TypeError", "forward with only ['attention_mask', 'input_ids', 'pixel_values'] raised "
                                               "TypeError: 'NoneType' object is not iterable")
    ran = run_script(written, path, "4.57.6", "4.57.6", None, workdir)
    verdict = judge("qwen2_5_vl-auto_image_text_to_text-default-forward", "forward", False, NAMES, planted, ran, None)
    assert ran.exit_code == 0, ran.output
    assert not verdict.verified and "does NOT reproduce" in verdict.summary and "harness" in verdict.summary


def test_an_expectation_repro_path_must_exist(tmp_path: Path) -> None:
    text = DEFAULT_MATRIX.read_text().replace(
        "    reason: AutoModel returns the base model without an LM head; nothing a trainer can sample from",
        "    reason: AutoModel returns the base model without an LM head; nothing a trainer can sample from\n"
        "    repro: repro/missing.py", 1)
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    assert load_matrix(path, check_model_types=False), "a copy elsewhere still loads (runs use copies)"
    with pytest.raises(MatrixError, match=r"expectations\[\d+\]\.repro: 'repro/missing\.py' is not a file"):
        load_matrix(path, check_model_types=False, check_files=True)
    for script in [*(DEFAULT_MATRIX.parent / "repro").glob("*.py"), Path("repro/missing.py")]:
        (tmp_path / "repro").mkdir(exist_ok=True)
        (tmp_path / "repro" / script.name).write_text("")
    assert load_matrix(path, check_model_types=False, check_files=True)


def test_the_default_matrix_links_scripts_that_exist() -> None:
    linked = [e.repro for e in MATRIX.expectations if e.repro]
    assert len(linked) == 5
    assert load_matrix(DEFAULT_MATRIX, check_model_types=False, check_files=True)


def test_the_cause_summary_says_which_causes_have_a_verified_script_and_why_others_have_none() -> None:
    from compat_matrix.repro.command import CauseScript, summary_md

    rows = [CauseScript("c1", "load: ValueError: x | y", "c1.py", "cell-a", "4.57.6", "5.24.0", 80, True,
                        "reproduces in 4.57.6 (...); passes in 5.24.0"),
            CauseScript("c2", "forward: CheckFailed", None, "cell-b", "5.24.0", None, None, False,
                        "no script: no script template builds gemma3 image inputs")]
    text = summary_md(rows, verified=True)
    assert "1 of 2 causes have a verified script" in text
    assert "| `c1.py` (80 lines) | `4.57.6/cell-a` | ✅ reproduces in 4.57.6" in text
    assert "| none | `5.24.0/cell-b` | no script: no script template builds gemma3 image inputs |" in text
    assert "x \\| y" in text


def test_every_same_release_script_of_the_default_matrix_is_short() -> None:
    """Pasted into an upstream issue: same-release scripts stay under SAME_RELEASE_LINES lines."""
    from compat_matrix.spec.cells import select_cells

    longest = max(write_script(Target(MATRIX, cell, release)).lines for cell in select_cells(MATRIX)
                  for release in ("4.57.6", "5.24.0") if _has_template(cell, release))
    assert 60 < longest <= SAME_RELEASE_LINES


def _has_template(cell: Cell, release: str) -> bool:
    try:
        write_script(Target(MATRIX, cell, release))
    except NoTemplate:
        return False
    return True


@pytest.mark.parametrize("cell_id, has, lacks", [
    ("phi3-smart-lora-load", ["LoRA target_modules {idle!r} (of {targets!r})", "not found in the base model"],
     ["target_parameters"]),
    ("qwen2_5_vl-smart-lora_paths-load", ["not found in the base model", "target_modules=r'model\\.layers"],
     ["(of {targets!r})", "target_parameters"]),
    ("deepseek_v3-smart-lora_params-load", ["target_parameters=['mlp.experts.gate_up_proj'", "(of {targets!r})",
                                            "it keeps one module per expert here"], []),
])
def test_a_lora_load_checks_what_its_target_list_can_fail(cell_id: str, has: list[str], lacks: list[str]) -> None:
    """target_matches as compat-matrix's LoRA load checks it, only the branches the profile's list can reach
    (a regex matches nothing or something; a list can also leave single names unmatched)."""
    written = script(cell_id, "4.57.6")
    assert written.needs == ("peft",) and "    adapt(transformers." in written.text and "def check_load" not in written.text
    for text in has:
        assert text in written.text, text
    for text in lacks:
        assert text not in written.text, text


def test_generate_and_adapter_roundtrip_scripts_do_the_probes_calls() -> None:
    generate = script("deepseek_v3-auto_model-default-generate", "4.57.6").text
    assert "transformers.AutoModel.from_pretrained(folder)" in generate and "options = dict(input_ids=INPUT_IDS, " in generate
    assert "repeatable: second call generated" in generate and '"peft"' not in generate
    roundtrip = script("qwen2_vl-smart-lora_vision-adapter_roundtrip@4.49.0", "5.24.0", good="4.57.6")
    assert roundtrip.steps == (("write",), ("read",)) and roundtrip.needs == ("peft", "pillow")
    assert '"peft", "pillow"]' in roundtrip.text, "Qwen2VLImageProcessor needs PIL to be made (4.49.0: ImportError)"
    assert "save_adapter(load(folder), folder)" in roundtrip.text and "peft.PeftModel.from_pretrained" in roundtrip.text
    assert "adapter_keys: {len(lost)} of {len(saved)} adapter tensors transformers " in roundtrip.text
    assert "{written_by(folder)} saved are not in the loaded model" in roundtrip.text
    with pytest.raises(NoTemplate, match="adapter_roundtrip"):
        script("qwen2_vl-smart-lora_vision-adapter_roundtrip", "4.57.6")


def test_a_cross_release_read_words_each_probe_as_the_harness_does() -> None:
    """The forward read runs the forward's checks, not the load probe's (whose wording differs), and the
    explicit route names the writing release from config.json (not the config the reader re-made)."""
    forward = script("qwen2_5_vl-auto_image_text_to_text-default-forward@5.24.0", "4.57.6").text
    assert "check(load(folder))" in forward and "def check_load" not in forward
    explicit = script("qwen2_5_vl-explicit_class-default-load@5.24.0", "4.57.6").text
    assert "transformers {written_by(folder)} saved this checkpoint as Qwen2_5_VLForConditionalGeneration" in explicit
    assert 'json.load(file)["transformers_version"]' in explicit


def test_the_report_names_each_causes_script_verified_or_why_none(tmp_path: Path) -> None:
    """`repro --causes` beside a report: report.md and index.html say per cause which script verified, which
    did not, and why a cause has none; the report without that step says nothing of scripts."""
    from compat_matrix.repro.command import CauseScript, with_reproductions
    from reports.build import build_report
    from reports.render_html import render_html
    from reports.render_md import render_markdown
    from reports.report import Report

    fixtures = Path(__file__).parent / "fixtures" / "results" / "nightly"
    report = build_report([fixtures / "tf457.jsonl", fixtures / "tflatest.jsonl"])
    failing = [c for c in report.causes if c.status in ("fail", "error")]
    assert len(failing) >= 3
    before = render_markdown(report)
    assert "verified script" not in before and "Reproductions" not in before
    rows = [CauseScript(failing[0].id, failing[0].title, f"{failing[0].id}.py", "cell-a", "4.57.6", "5.24.0", 64, True,
                        "reproduces in 4.57.6 (load: ValueError: x); passes in 5.24.0"),
            CauseScript(failing[1].id, failing[1].title, f"{failing[1].id}.py", "cell-b", "5.24.0", None, 70, False,
                        "does NOT reproduce: the script passes in 5.24.0, where the cell fails with X"),
            CauseScript(failing[2].id, failing[2].title, None, "cell-c", "5.24.0", None, None, False,
                        "no script: no script template builds gemma3 image inputs")]
    updated = with_reproductions(report, rows, Path("repro"))
    updated.write(tmp_path / "report.json")
    read = Report.read(tmp_path / "report.json")
    assert read.causes == updated.causes, "report.json keeps the reproductions"
    markdown, html = render_markdown(read), render_html(read)
    assert "**Reproductions**: 1 of 3 failing causes have a verified script" in markdown
    assert f"verified script: [`repro/{failing[0].id}.py`](repro/{failing[0].id}.py) (64 lines; reproduces in 4.57.6" in markdown
    assert f"script [`repro/{failing[1].id}.py`](repro/{failing[1].id}.py), **not verified**: does NOT reproduce" in markdown
    assert "**no verified script**: no script template builds gemma3 image inputs" in markdown
    assert f'verified script: <a href="repro/{failing[0].id}.py">' in html
    assert "<strong>no verified script</strong>: no script template builds gemma3 image inputs" in html
    assert "<strong>Reproductions</strong>: 1 of 3 failing causes have a verified script" in html
    assert "Reproductions" not in render_html(report)


def test_the_scripts_config_is_the_builds_for_every_tiny_model() -> None:
    """Special token ids and initializer_range as compat_tests/tiny/checkpoint.py sets them (Phi-3's default
    pad_token_id 32000 is outside the tiny vocabulary: a script without the build's ids cannot build it)."""
    from compat_matrix.repro.script import resolved_config
    from compat_tests.tiny.checkpoint import _config_kwargs
    from compat_tests.tiny.families import FAMILIES

    checked = 0
    for entry in MATRIX.models:
        if entry.source == "tiny" and entry.recipe is not None and entry.recipe.model_type in FAMILIES:
            assert resolved_config(entry) == _config_kwargs(entry.recipe, FAMILIES[entry.recipe.model_type]), entry.key
            checked += 1
    assert checked >= 15
    assert resolved_config(MATRIX.model("phi3"))["pad_token_id"] < MATRIX.model("phi3").recipe.config["vocab_size"]


def test_the_scripts_word_each_failure_as_the_harness_does() -> None:
    """The cause signature compares the wording: each phrase a script prints is the harness's own."""
    from compat_matrix.repro import blocks

    root = Path(__file__).parents[1]
    harness = "".join((root / path).read_text() for path in (
        "compat_tests/probes/load.py", "loader/inspection.py", "compat_tests/probes/forward.py", "compat_tests/lora.py",
        "compat_tests/probes/adapter_roundtrip.py", "compat_tests/probes/generate.py", "compat_tests/probes/lora_step.py",
        "compat_tests/execute.py", "loader/strategies/explicit.py", "compat_tests/probes/compare.py"))
    harness = re.sub(r"\"\s*\n\s*f?\"", "", harness)  # one message's string literals, joined
    phrases = ["has no LM head (get_output_embeddings() is None)", "has no vision tower although the config has a vision_config",
               "weights newly initialised (found in the checkpoint neither by name nor by content): ",
               "checkpoint tensors left unused (no model tensor holds them): ", "loaded, but a text forward raised ",
               "returns no logits (", "logits contain NaN or inf", "match no parameter of ", "(peft leaves them out without a word; ",
               "it keeps one module per expert here: name the projections in target_modules", ", so only the other names' ",
               "adapter tensors transformers ", "saved are not in the loaded model: ", "adapter_load: PeftModel.from_pretrained raised ",
               "gives different logits than with every ", "config.architectures is empty; there is no explicit class to load",
               "tensor(s) (", "on the same inputs", "tolerance: weights loaded wrong", "none re-initialised): the computation changed between the releases", "got no gradient although the loss uses their ",
               "no adapter weight moved after the optimizer step (", "the checkpoint's tokenizer, read here, encodes the reference prompt as ",
               "the tokenizer reads back differently"]
    text = "".join(v for k, v in vars(blocks).items() if k.isupper()) + Path(blocks.__file__).with_name("script.py").read_text()
    for phrase in phrases:
        assert phrase in text, f"scripts no longer print {phrase!r}"
        assert phrase in harness or phrase.replace("(", "") in harness, f"the harness no longer words {phrase!r} so"


def test_a_cross_release_script_saves_the_familys_tokenizer_class() -> None:
    """As the tiny build: Mistral's LlamaTokenizer (which 4.57.6 reads back from 5.24.0), Llama 3's
    PreTrainedTokenizerFast (which 5.24.0 saves as TokenizersBackend: the llama cause)."""
    mistral = script("mistral-auto_model-default-load@5.24.0", "4.57.6").text
    assert '(getattr(transformers, "LlamaTokenizerFast", None) or transformers.LlamaTokenizer)(\n        tokenizer_object=' in mistral
    llama = script("llama-explicit_class-default-load@5.24.0", "4.57.6").text
    assert "transformers.PreTrainedTokenizerFast(\n        tokenizer_object=" in llama
    assert 'bos = "<|begin_of_text|>"  # the family\'s tokenizer prepends it' in llama, "as the build's post-processor"


def test_a_cross_release_load_compares_the_prompts_ids_as_the_load_probe() -> None:
    """Phi-3's tokenizer (add_bos_token false, as its tokenizer_config.json) that 5.24.0 saves, 4.57.6 reads back with a
    bos added: the load probe compares the reference prompt's ids before the logits, and so does the script."""
    phi3 = script("phi3-auto_causal_lm-default-load@5.24.0", "4.57.6", good="5.24.0").text
    for text in ('bos_token="<s>"', "add_bos_token=False, legacy=False", 'json.dump(tokenizer()(PROMPT)["input_ids"], file)',
                 "the tokenizer reads back differently", '"<s>": 991'):
        assert text in phi3, text
    assert "TemplateProcessing" not in phi3 and "processors" not in phi3, "Phi-3 adds no bos: no post-processor, no import"
    forward = script("phi3-auto_causal_lm-default-forward@5.24.0", "4.57.6").text
    assert "PROMPT" not in forward and "reference_ids" not in forward, "the forward probe compares no ids"
    qwen = script("qwen3_moe-auto_causal_lm-default-load@5.24.0", "4.57.6").text
    assert "reference_ids" not in qwen, "5.x's Qwen2Tokenizer rebuilds its byte-level BPE: a word vocabulary reads back empty"
    assert "reference_ids" not in script("gemma2-auto_causal_lm-default-load@5.24.0", "4.57.6").text, "GemmaTokenizer too"


def test_the_prompt_has_as_many_tokens_as_the_cells_writer_encoded() -> None:
    """The masked messages keep the lists' lengths: Phi-3's cell quotes 4 ids from the writer, so the script's prompt
    has 4 words (Llama 3's writer ids include its bos: one word fewer)."""
    from compat_matrix.repro.command import prompt_tokens, script_for

    quoted = ("the checkpoint's tokenizer, read here, encodes the reference prompt as [991, 970, 817, 830, 870]; "
              "transformers 5.24.0 encoded it as [970, 817, 830, 870]: the tokenizer reads back differently")
    outcome = CellOutcome("fail", "CheckFailed", quoted)
    assert prompt_tokens(outcome) == 4 and prompt_tokens(CellOutcome("fail", "E", "other")) is None
    phi3 = script_for(MATRIX, Cell.from_id("phi3-auto_causal_lm-default-load@5.24.0"), "4.57.6", "5.24.0", "r.py", outcome)
    assert 'PROMPT = "describe the picture please"' in phi3.text
    llama = script_for(MATRIX, Cell.from_id("llama-explicit_class-default-load@5.24.0"), "4.57.6", "5.24.0", "r.py", outcome)
    assert 'PROMPT = "describe the picture"' in llama.text


def test_causes_reuses_a_verdict_only_for_the_same_script_and_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second `--causes --verify` into the same folder runs only the scripts that changed (a nightly rerun,
    a run cut short): the verdict of an identical script on the same cell and releases is kept."""
    import argparse

    from compat_matrix.repro import command
    from reports.build import build_report

    fixtures = Path(__file__).parent / "fixtures" / "results" / "nightly"
    report = build_report([fixtures / "tf457.jsonl", fixtures / "tflatest.jsonl"])
    cause = next(c for c in report.causes if c.status == "fail" and "qwen2_5_vl-auto_causal_lm-default-load" in " ".join(c.cells))
    runs: list[str] = []

    def fake_verify(*args: object) -> object:
        runs.append(cause.id)
        return command.Verdict("c", "4.57.6", None, True, None, "reproduces in 4.57.6 (...)", ScriptRun("4.57.6", 1, "E", "", ""))

    monkeypatch.setattr(command, "verify", fake_verify)
    args = argparse.Namespace(verify=True)
    first = command._cause_script(args, MATRIX, DEFAULT_MATRIX, report, cause, tmp_path, None)
    again = command._cause_script(args, MATRIX, DEFAULT_MATRIX, report, cause, tmp_path, first)
    assert first.verified and first.checked and again == first and runs == [cause.id]
    stale = command.CauseScript(**{**first.__dict__, "checked": "0" * 64})
    command._cause_script(args, MATRIX, DEFAULT_MATRIX, report, cause, tmp_path, stale)
    assert runs == [cause.id, cause.id], "another script (or cell, or release) is verified again"


@pytest.mark.parametrize("cell_id, tokens, extra", [
    ("llava-smart-lora_vision-grpo_step", "[990] * 4", None),
    ("gemma3-smart-lora_vision-grpo_step", "[990] * 4", '"token_type_ids": (ids == 990).long()'),
    ("paligemma-smart-lora_vision-grpo_step", "[990] * 4", '"token_type_ids": torch.zeros_like(ids)'),
    ("internvl-smart-lora_vision-grpo_step", "[990] * 1", None),
])
def test_a_lora_step_on_another_image_family_lays_out_its_image_tokens(cell_id: str, tokens: str, extra: str | None) -> None:
    """One square image at the vision tower's size and as many image tokens as the tiny processor gives
    (28x28, patch 14: 4; InternVL's pixel shuffle by 0.5: 1; Gemma3's mm_tokens_per_image: 4)."""
    text = script(cell_id, "4.57.6", good="5.24.0").text
    assert tokens in text and "torch.randn(1, 3, 28, 28)" in text
    assert (extra in text) if extra else "token_type_ids" not in text
    assert "register_forward_hook(noise)" in text, "a module the forward does not use is not a cut gradient"


def test_a_script_builds_no_all_zero_matrix_as_the_tiny_build() -> None:
    """Gemma3's init zeroes mm_input_projection_weight: without the build's fill its image changes nothing."""
    from compat_tests.tiny.checkpoint import fill_zero_matrices

    assert "parameter.normal_(0.0, INIT_STD)" in inspect_source(fill_zero_matrices)
    text = script("gemma3-smart-lora_vision-grpo_step", "4.57.6").text
    assert "if p.is_floating_point() and not p.any() and (p.dim() >= 2 or p.numel() == 1):" in text
    assert "torch.nn.init.normal_(p, 0.0, 0.1) if p.dim() >= 2 else torch.nn.init.ones_(p)" in text


def inspect_source(function: object) -> str:
    import inspect

    return inspect.getsource(function)  # type: ignore[arg-type]


def test_the_load_check_reads_loading_info_as_lists_or_sets() -> None:
    """4.57.6 gives lists, 5.24.0 sets (a set + list raised TypeError in the good release's run)."""
    import types

    text = script("deepseek_v3-auto_model-default-load", "4.57.6").text
    namespace: dict[str, object] = {"__name__": "lib"}
    exec(compile(text.split('if __name__ == "__main__":')[0], "repro", "exec"), namespace)  # the functions, no run
    for info in ({"missing_keys": set(), "unexpected_keys": {"lm_head.weight"}, "mismatched_keys": set()},
                 {"missing_keys": [], "unexpected_keys": ["lm_head.weight"], "mismatched_keys": [("a.b.c", (1,), (2,))]}):
        model = types.SimpleNamespace(get_output_embeddings=lambda: None)
        with pytest.raises(SystemExit, match="has no LM head .*checkpoint tensors left unused .*LM head: 1 tensor"):
            namespace["check_load"](model, info, None)  # type: ignore[operator]


GPT_OSS_SDPA = ("GptOssForCausalLM does not support an attention implementation through torch.nn.functional.scaled_dot_product_attention "
                "yet. Please request the support for this architecture: https://github.com/huggingface/transformers/issues/28005. "
                "If you believe this error is a bug, please open an issue in Transfo...")


def test_a_smart_load_that_fails_on_every_route_is_reproduced_with_its_chain(tmp_path: Path) -> None:
    """`smart` wraps the library's error in LoadFailed, one line per route it tried: the script tries the
    cell's routes in turn and words it so (its signature was the library's own error before: not reproduced)."""
    from compat_matrix.repro.command import script_for, smart_routes

    message = (f"no route loaded a usable model:\n  architectures:GptOssForCausalLM: ValueError: {GPT_OSS_SDPA}\n"
               f"  auto:AutoModelForCausalLM: ValueError: {GPT_OSS_SDPA}")[:600]  # as report.json has it: cut
    outcome = CellOutcome("fail", "LoadFailed", message)
    assert smart_routes(outcome) == ("architectures:GptOssForCausalLM", "auto:AutoModelForCausalLM")
    assert smart_routes(CellOutcome("fail", "ValueError", GPT_OSS_SDPA)) == ()
    cell = Cell.from_id("gpt_oss-smart-trainer-load")
    written = script_for(MATRIX, cell, "4.57.6", None, "repro.py", outcome)  # type: ignore[arg-type]
    assert "['architectures:GptOssForCausalLM', 'auto:AutoModelForCausalLM']" in written.text and written.lines <= 80
    assert "def load(folder)" not in script("gpt_oss-smart-trainer-load", "4.57.6").text, "no chain without LoadFailed"
    workdir = python_env(tmp_path, "4.57.6")
    path = tmp_path / "repro.py"
    path.write_text(written.text)
    ran = run_script(written, path, "4.57.6", "4.57.6", None, workdir)
    verdict = judge(cell.id, "load", False, NAMES, outcome, ran, None)
    assert ran.error_type == "LoadFailed" and verdict.verified, verdict.summary + ran.output


def test_a_grpo_step_without_adapter_samples_then_trains_and_compares_log_probs() -> None:
    """grpo_step of a full model: the probe's sampling (a left-padded batch of G completions per prompt), its
    train-mode forward and its logprob_match / grad_head checks, worded as the probe; only transformers and torch."""
    written = script("gpt_oss-smart-router_aux-grpo_step", "4.57.6")
    assert imported(written.text) <= ALLOWED_IMPORTS and written.needs == () and written.lines < 80
    header = written.text.split("# ///")[1]
    assert '"transformers==4.57.6", "torch==2.13.0"]' in header
    for text in ("part.update({'output_router_logits': True})", "for _ in range(4)]", "max_new_tokens=4, do_sample=True",
                 "logprob_match: training log-probs of the sampled tokens differ from the generation logits by ",
                 "train_forward: a train-mode forward on a micro-batch of ", "gradient_checkpointing_enable()",
                 "v[i:i + 1] for k, v in batch.items()}, **kept)", '{"logits_to_keep": completion.shape[1] + 1}'):  # as TRL's
        assert text in written.text, text
    harness = (Path(__file__).parents[1] / "compat_tests" / "probes" / "grpo_step.py").read_text()
    assert "(the same rows ran in eval mode while sampling)" in harness and '"no gradient reached the LM head"' in harness
    image = script("paligemma-auto_image_text_to_text-default-grpo_step", "4.57.6", good="5.24.0")
    assert imported(image.text) <= ALLOWED_IMPORTS and image.needs == () and image.lines < 80
    for text in ("rows = [[5] + [990] * 4 + [9, 14, 20] + p for p", "torch.randn(len(rows), 3, 28, 28)", "suppress_tokens=[990], **extra",
                 "torch.full_like(completion, 1)], 1)  # a causal suffix"):  # PaliGemma's completion is its suffix (grpo_batch)
        assert text in image.text, text
    assert "_COMPLETION_TOKEN_TYPE = {\"paligemma\": 1}" in (Path(__file__).parents[1] / "compat_tests" / "probes" / "grpo_batch.py").read_text()
    with pytest.raises(NoTemplate, match="no script template for grpo_step .templates: "):
        script("qwen2_vl-explicit_class-default-grpo_step", "4.57.6")


def test_image_text_generation_lays_out_the_familys_inputs_by_hand() -> None:
    """The generate probe prompts image-text models with an image: Mllama's tiles, aspect ratio and cross-attention
    mask as MllamaProcessor gives them (the text route's generate refuses them: the mllama cause), LLaVA's image tokens."""
    mllama = script("mllama-auto_causal_lm-default-generate", "4.57.6", good="5.24.0")
    assert imported(mllama.text) <= ALLOWED_IMPORTS and mllama.needs == () and mllama.lines < 80
    assert '"transformers==4.57.6", "torch==2.13.0"]' in mllama.text.split("# ///")[1]
    for text in ('"pixel_values": torch.randn(1, 1, 4, 3, 28, 28)', '"aspect_ratio_ids": torch.tensor([[1]]), "aspect_ratio_mask": tiles',
                 "options = dict(**image_text_inputs(model), max_new_tokens=4", "transformers.AutoModelForCausalLM.from_pretrained(folder)"):
        assert text in mllama.text, text
    keys = re.findall(r'"(\w+)": ', mllama.text.split("def image_text_inputs")[1].split("def check")[0])
    assert keys[2:5] == ["pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"], "in the processor's order: the error lists them so"
    llava = script("llava-smart-default-generate", "4.57.6").text
    assert "[990] * 4" in llava and "**image_text_inputs(model)" in llava


def test_smart_sets_a_config_keyword_on_the_config_as_its_loader_does() -> None:
    """loader/kwargs.py: `smart` sets use_cache (any keyword from_pretrained does not read) on the config and its
    text config and passes the config; the script for a smart cell does the same (PaliGemma's trainer call then
    loads in 4.57.6 where the explicit class refuses use_cache), the other routes pass it as given."""
    from loader.kwargs import LOADING_KEYWORDS

    assert "use_cache" not in LOADING_KEYWORDS and "attn_implementation" in LOADING_KEYWORDS
    smart = script("paligemma-smart-trainer-grpo_step", "4.57.6").text
    assert "KWARGS = {'dtype': 'bfloat16', 'attn_implementation': 'sdpa'}" in smart
    assert "for part in (config, config.get_text_config()): part.update({'use_cache': False})" in smart
    assert "from_pretrained(folder, config=config, **KWARGS)" in smart
    explicit = script("paligemma-explicit_class-trainer-grpo_step", "4.57.6").text
    assert "KWARGS = {'dtype': 'bfloat16', 'use_cache': False, 'attn_implementation': 'sdpa'}" in explicit
    assert "config=config" not in explicit


QWEN3_VL_AUTO_MODEL = (  # the 4.57.6 cell's message, as the load probe's weight account words it
    "Qwen3VLModel has no LM head (get_output_embeddings() is None); weights newly initialised (found in the checkpoint "
    "neither by name nor by content): vision tower: 14 tensor(s) (visual.patch_embed.proj.weight, visual.pos_embed.weight, "
    "and 12 more); embeddings: 1 tensor(s) (language_model.embed_tokens.weight); other weights: 14 tensor(s) "
    "(language_model.layers.0.self_attn.q_proj.weight, language_model.layers.0.self_attn.k_proj.weight, and 12 more); "
    "checkpoint tensors left unused (no model tensor holds them): LM head: 1 tensor(s) (lm_head.weight); embeddings: "
    "1 tensor(s) (model.language_model.embed_tokens.weight); other weights: 14 tensor(s) "
    "(model.language_model.layers.0.mlp.down_proj.weight, model.language_model.layers.0.mlp.gate_proj.weight, and 12 more); "
    "vision tower: 14 tensor(s) (model.visual.blocks.0.attn.proj.weight, model.visual.blocks.0.attn.qkv.weight, and 12 more)")


def test_weights_found_by_content_are_not_counted_new_as_the_load_probe(tmp_path: Path) -> None:
    """Qwen3-VL's AutoModel in 4.57.6 finds no tensor by name; the load probe's account still finds its norms of ones
    and zero biases under the checkpoint's names, by value. By name only, the script listed 39 vision tensors
    new where the cell lists 14 (another cause); counting as the account does, it reproduces the cell."""
    from compat_matrix.repro.command import script_for

    cell = Cell.from_id("qwen3_vl-auto_model-default-load")
    outcome = CellOutcome("fail", "CheckFailed", QWEN3_VL_AUTO_MODEL)
    written = script_for(MATRIX, cell, "4.57.6", None, "repro.py", outcome)  # type: ignore[arg-type]
    assert "safetensors.torch.load_file(" in written.text and written.lines <= SAME_RELEASE_LINES
    assert "load_file" not in script("qwen3_vl-auto_model-default-load", "4.57.6").text, "by name without such a cell"
    workdir = python_env(tmp_path, "4.57.6")
    path = tmp_path / "repro.py"
    path.write_text(written.text)
    ran = run_script(written, path, "4.57.6", "4.57.6", None, workdir)
    verdict = judge(cell.id, "load", False, NAMES, outcome, ran, None)  # type: ignore[union-attr]
    assert verdict.verified, verdict.summary + ran.output


def test_mllamas_checkpoint_carries_its_processor_read_whole_as_its_readers_do() -> None:
    """5.24.0 saves Mllama's PreTrainedTokenizerFast as TokenizersBackend, which 4.57.6's AutoTokenizer cannot find; its
    build saves MllamaProcessor, which AutoProcessor reads whole (the class it names, not tokenizer_class): the script
    saves and reads the same, and compares the prompt's ids through the processor's tokenizer."""
    written = script("mllama-smart-default-load@5.24.0", "4.57.6", good="5.24.0")
    for text in ("transformers.MllamaProcessor(image_processor=image_processor(), tokenizer=tokenizer()).save_pretrained(folder)",
                 "transformers.MllamaImageProcessor(size={\"height\": 28, \"width\": 28}, max_image_tiles=4)",
                 "transformers.AutoProcessor.from_pretrained(folder).tokenizer(PROMPT)[\"input_ids\"]"):
        assert text in written.text, text
    assert "AutoTokenizer" not in written.text and written.needs == ("pillow",)
    ast.parse(written.text)
    llama = script("llama-explicit_class-default-load@5.24.0", "4.57.6").text
    assert "transformers.AutoTokenizer.from_pretrained(folder)" in llama, "a text model's reader takes AutoTokenizer: the llama cause"


def test_smart_on_a_checkpoint_without_architectures_goes_on_to_an_auto_class(tmp_path: Path) -> None:
    """5.24.0's Qwen2.5-VL checkpoint read by 4.57.6 has no config.architectures: the explicit class's script stops
    (ArchitectureLost, VLM-R1's model_cls), `smart`'s goes on to AutoModelForImageTextToText as its loader does."""
    import json

    smart = script("qwen2_5_vl-smart-lora_paths-load@5.24.0", "4.57.6")
    assert "else transformers.AutoModelForImageTextToText" in smart.text and "ArchitectureLost" not in smart.text
    assert "ArchitectureLost" in script("qwen2_5_vl-explicit_class-lora_paths-load@5.24.0", "4.57.6").text
    trainer = script("qwen2_5_vl-smart-trainer-load@5.24.0", "4.57.6").text
    assert trainer.count("AutoConfig.from_pretrained(folder)") == 2, "the read step's, and one in load(): smart's settings kept"
    namespace: dict[str, object] = {"__name__": "lib"}
    default = script("qwen2_5_vl-smart-default-load@5.24.0", "4.57.6").text  # the same load(), no peft
    exec(compile(default.split('if __name__ == "__main__":')[0], "repro", "exec"), namespace)  # the functions, no run
    folder = tmp_path / "ckpt"
    namespace["build"](str(folder))  # type: ignore[operator]
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": None}))  # as 4.57.6 reads 5.24.0's
    model, _ = namespace["load"](str(folder))  # type: ignore[operator]
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"


MLLAMA_TEXT_ROUTE = ("The following `model_kwargs` are not used by the model: ['pixel_values', 'aspect_ratio_ids', "
                     "'aspect_ratio_mask'] (note: typos in the generate arguments will also show up in this list)")


def test_mllamas_grpo_step_samples_its_image_rows_as_its_processor_lays_them_out(tmp_path: Path) -> None:
    """Mllama's GRPO rows carry one tile of max_num_tiles and a cross-attention mask, extended over the completion as
    generate extends it: the text route refuses them while sampling (the cell's cause, reproduced), the image route
    samples and trains with log-probs that match (a pass)."""
    workdir = python_env(tmp_path, "4.57.6")
    runs = {}
    for route in ("auto_causal_lm", "explicit_class"):
        written = script(f"mllama-{route}-default-grpo_step", "4.57.6")
        assert imported(written.text) <= ALLOWED_IMPORTS and written.lines <= SAME_RELEASE_LINES
        path = tmp_path / f"{route}.py"
        path.write_text(written.text)
        runs[route] = run_script(written, path, "4.57.6", "4.57.6", None, workdir)
    for text in ('"pixel_values": torch.randn(len(rows), 1, 4, 3, 28, 28)', "[tiles[:, None]] * completion.shape[1], 1)",
                 "suppress_tokens=[990], **extra"):
        assert text in written.text, text
    outcome = CellOutcome("fail", "ValueError", MLLAMA_TEXT_ROUTE)
    verdict = judge("mllama-auto_causal_lm-default-grpo_step", "grpo_step", False, NAMES, outcome, runs["auto_causal_lm"],
                    runs["explicit_class"])  # the image route's run stands for a good one: it must pass
    assert verdict.reproduced and runs["explicit_class"].exit_code == 0, verdict.summary + runs["explicit_class"].output


def test_a_script_that_fails_part_of_the_cells_checks_says_which_part() -> None:
    """PaliGemma's LoRA step before 5.0 fails grad_adapter (the vision LoRA's break) and logprob_match (its bidirectional
    attention's): the LoRA step's script makes the first check only. Not verified, and the verdict says why."""
    grad = ("grad_adapter: 6 of 20 adapter modules got no gradient although the loss uses their output (the gradient is cut "
            "on the way): model.vision_tower.vision_model.encoder.layers.0.self_attn.k_proj")
    logprob = ("logprob_match: training log-probs of the sampled tokens differ from the generation logits by 0.48 (tolerance "
               "7.15e-05 for torch.float32): positions, rope or the KV cache disagree")
    outcome = CellOutcome("fail", "CheckFailed", f"{grad}; {logprob}")
    ran = ScriptRun("4.57.6", 1, "CheckFailed", grad.replace("6 of 20", "5 of 20"), "")
    verdict = judge("paligemma-smart-lora-grpo_step", "grpo_step", False, NAMES, outcome, ran, None)
    assert not verdict.verified
    assert "reproduces only part of the cell's failure in 4.57.6: grad_adapter as the cell; the cell also fails logprob_match" in verdict.summary
    other = ScriptRun("4.57.6", 1, "CheckFailed", "adapter_changed: no adapter weight moved after the optimizer step (3 modules)", "")
    assert "does NOT reproduce the cause" in judge("c", "grpo_step", False, NAMES, outcome, other, None).summary
