"""Bad input, as a new user would give it: each kind is one clear message naming what is wrong,
exit code 2, no traceback, and nothing half-written (the output folder stays as it was).

Every kind is one entry of BAD_INPUTS; `compat-matrix` runs in-process on it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from compat_matrix.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "results"

GOOD_MATRIX = yaml.safe_dump({
    "transformers": ["4.57.6"],
    "models": [{"key": "llama", "hub_id": "meta-llama/Llama-3.2-1B-Instruct", "modality": "text",
                "recipe": {"model_type": "llama", "architecture": "LlamaForCausalLM",
                           "config": {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
                                      "num_hidden_layers": 2}}}],
}, sort_keys=False)



def with_profile(profile: dict[str, object]) -> str:
    """GOOD_MATRIX whose model has a second load profile, `lora`."""
    data = yaml.safe_load(GOOD_MATRIX)
    data["models"][0]["load_kwargs"] = {"default": {}, "lora": profile}
    return yaml.safe_dump(data, sort_keys=False)


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]\n" for p, x in zip("abcdefgh", "bcdefghi"))
"""A "billion laughs" document: 9 levels of 9 aliases, 9^9 values from under 1 KB."""


@dataclass
class Bad:
    """One kind of bad input: how to plant it, the command, and what the message must say."""

    argv: Callable[[Path], list[str]]
    says: tuple[str, ...]
    env: dict[str, str] | None = None


def matrix(tmp_path: Path, text: str) -> str:
    (tmp_path / "matrix.yaml").write_text(text)
    return str(tmp_path / "matrix.yaml")


def run_with(text: str, *extra: str) -> Callable[[Path], list[str]]:
    """`compat-matrix --matrix <text> run --transformers latest --out <tmp>/out ...`."""
    return lambda tmp: ["--matrix", matrix(tmp, text), "run", "--transformers", "latest", "--out", str(tmp / "out"), *extra]


def validate(text: str | bytes) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        path = tmp / "matrix.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["validate", str(path)]
    return argv


def report(*paths: str, baseline: str | None = None) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        if baseline is not None:
            (tmp / "baseline.json").write_text(baseline)
        return ["report", *(p.replace("TMP", str(tmp)) for p in paths), "--out", str(tmp / "out"),
                *(["--baseline", str(tmp / "baseline.json")] if baseline is not None else [])]
    return argv


def out_is_a_file(tmp: Path) -> list[str]:
    (tmp / "taken").write_text("a file, not a folder")
    return ["--matrix", matrix(tmp, GOOD_MATRIX), "run", "--transformers", "latest", "--out", str(tmp / "taken" / "out")]


BAD_INPUTS: dict[str, Bad] = {
    "matrix-billion-laughs": Bad(validate(LAUGHS), ("MAX_VALUES", "aliases")),
    "matrix-nested-too-deep": Bad(validate("a: " + "[" * 3000 + "]" * 3000 + "\n"), ("MAX_DEPTH",)),
    "matrix-too-big": Bad(validate(GOOD_MATRIX + "#" * 1_100_000 + "\n"), ("MAX_BYTES",)),
    "matrix-not-utf8": Bad(validate(b"transformers: [4.57.6]\nmodels: \xff\xfe\n"), ("not UTF-8",)),
    "matrix-not-yaml": Bad(validate("transformers: [4.57.6\nmodels: {"), ("not valid YAML",)),
    "matrix-architecture-not-a-class": Bad(validate(GOOD_MATRIX.replace("LlamaForCausalLM", "os.system")),
                                           ("recipe.architecture", "'os.system' is not a class name")),
    "matrix-model-type-not-a-name": Bad(validate(GOOD_MATRIX.replace("model_type: llama", "model_type: '../x'")),
                                        ("recipe.model_type", "not a model_type")),
    "matrix-tiny-recipe-not-tiny": Bad(validate(GOOD_MATRIX.replace("vocab_size: 1000\n", "vocab_size: 1000000000\n")),
                                       ("128,000,", "TINY_PARAMETER_CAP", "50,000,000")),
    "matrix-unknown-probe": Bad(validate(GOOD_MATRIX + "probes: [load, 'os.system']\n"), ("unknown probe", "allowed")),
    "matrix-lora-targets-empty": Bad(validate(with_profile({"adapter": {"lora": {"r": 8, "target_modules": []}}})),
                                     ("load_kwargs.lora.adapter.lora.target_modules", "an empty list matches no module")),
    "matrix-lora-regex-invalid": Bad(validate(with_profile({"adapter": {"lora": {"target_modules": "(q|k_proj"}}})),
                                     ("load_kwargs.lora.adapter.lora.target_modules", "is not a regular expression")),
    "matrix-lora-rank-zero": Bad(validate(with_profile({"adapter": {"lora": {"r": 0, "target_modules": ["q_proj"]}}})),
                                 ("load_kwargs.lora.adapter.lora.r", "greater than or equal to 1")),
    "matrix-adapter-unknown-type": Bad(validate(with_profile({"adapter": {"dora": {"r": 8}}})),
                                       ("load_kwargs.lora.adapter.dora", "unknown key")),
    "matrix-profile-unknown-probe": Bad(validate(with_profile({"probes": ["grpo"]})),
                                        ("load_kwargs.lora.probes", "unknown probe ['grpo']", "grpo_step")),
    "matrix-missing": Bad(lambda tmp: ["validate", str(tmp / "nope.yaml")], ("file not found",)),
    "matrix-is-a-folder": Bad(lambda tmp: ["validate", str(tmp)], ("file not found",)),
    "cli-unknown-model": Bad(run_with(GOOD_MATRIX, "--models", "lama"), ("unknown model", "llama")),
    "cli-zero-workers": Bad(run_with(GOOD_MATRIX, "-n", "0"), ("at least 1",)),
    "cli-workers-not-a-number": Bad(run_with(GOOD_MATRIX, "-n", "two"), ("not a whole number",)),
    "cli-release-not-a-version": Bad(lambda tmp: ["--matrix", matrix(tmp, GOOD_MATRIX), "run", "--transformers",
                                                  "4.57.x", "--out", str(tmp / "out")], ("'4.57.x' is not a release",)),
    "bisect-saved-by-without-cross-release": Bad(
        lambda tmp: ["--matrix", matrix(tmp, GOOD_MATRIX), "bisect", "--good", "5.0.0", "--bad", "5.1.0", "--saved-by",
                     "5.0.0", "--out", str(tmp / "out")], ("--saved-by is for cross-release cells: add --cross-release",)),
    "bisect-cross-release-both-sides": Bad(
        lambda tmp: ["--matrix", matrix(tmp, GOOD_MATRIX), "bisect", "--good", "5.0.0", "--bad", "5.1.0",
                     "--cross-release", "--saved-by", "5.0.0", "--loaded-by", "5.1.0", "--out", str(tmp / "out")],
        ("--saved-by S", "--loaded-by L", "not both, not neither")),
    "cli-unknown-command": Bad(lambda tmp: ["runn"], ("invalid choice",)),
    "cli-out-is-not-writable": Bad(out_is_a_file, ("cannot write results there",)),
    "env-device-bad": Bad(run_with(GOOD_MATRIX), ("COMPAT_MATRIX_DEVICE='gpu'", "auto, cpu, cuda"),
                          env={"COMPAT_MATRIX_DEVICE": "gpu"}),
    "env-torch-pin-bad": Bad(run_with(GOOD_MATRIX), ("COMPAT_MATRIX_TORCH='latest'", "exact torch version"),
                             env={"COMPAT_MATRIX_TORCH": "latest"}),
    "env-cache-is-a-file": Bad(run_with(GOOD_MATRIX), ("COMPAT_MATRIX_CACHE", "is a file"),
                               env={"COMPAT_MATRIX_CACHE": __file__}),
    "results-nothing-readable": Bad(report(str(FIXTURES / "bad" / "invalid.jsonl")), ("no readable cell",)),
    "results-missing": Bad(report("TMP/none.jsonl"), ("no such file", "no readable cell")),
    "baseline-of-another-schema": Bad(report(str(FIXTURES / "nightly"), baseline=json.dumps({"schema_version": 99})),
                                      ("schema_version 99",)),
    "baseline-is-a-results-file": Bad(report(str(FIXTURES / "nightly"),
                                             baseline=(FIXTURES / "nightly" / "tf457.jsonl").read_text()),
                                      ("cannot read a report.json",)),
    "report-expectations-invalid": Bad(lambda tmp: ["report", str(FIXTURES / "nightly"), "--out", str(tmp / "out"),
                                                    "--expectations", matrix(tmp, "transformers: []\n")],
                                       ("not a valid matrix file",)),
    "report-out-is-not-writable": Bad(lambda tmp: ["report", str(FIXTURES / "nightly"), "--out", __file__],
                                      ("cannot write the report",)),
}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_message_and_exit_2(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bad = BAD_INPUTS[kind]
    for name, value in (bad.env or {}).items():
        monkeypatch.setenv(name, value)
    argv = bad.argv(tmp_path)
    before = snapshot(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for phrase in bad.says:
        assert phrase in err, f"{kind}: {phrase!r} not in:\n{err}"
    after = snapshot(tmp_path)
    changed = {k for k in after if before.get(k) != after[k]}
    if kind == "results-nothing-readable" or kind == "results-missing":  # the report says why, whole
        assert json.loads((tmp_path / "out" / "report.json").read_text())["cells"] == []
        changed -= {k for k in changed if k.startswith("out/")}
    assert changed == set(), f"{kind} wrote {sorted(changed)}"


def test_there_are_at_least_15_kinds() -> None:
    assert len(BAD_INPUTS) >= 15 and len({k.split("-")[0] for k in BAD_INPUTS}) >= 6
