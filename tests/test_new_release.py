"""The nightly's triage of a new `latest`: each root cause marked upstream break, dependency change or
harness error, with the first bad release where a bisect found one, and the trl and peft releases."""

from __future__ import annotations

import json
from pathlib import Path

from compat_matrix.bisect import new_release
from compat_matrix.bisect.new_release import RootCause, markdown, root_causes, training_libraries, with_first_bad
from reports.build import build_report
from tests.test_reports_diff import BASE, NEEDS_TORCHVISION

LIBRARIES = {"trl": "1.16.0", "peft": "0.21.2", "accelerate": "1.15.0", "tokenizers": "0.23.3"}


def _line(release: str, model: str, probe: str, status: str, **fields: object) -> dict:
    return {**BASE, "transformers": release, "env": f"tf{release}", "model": model, "hub_id": f"org/{model}",
            "strategy": "smart", "load_kwargs": "default", "probe": probe, "cell_id": f"{model}-smart-default-{probe}",
            "status": status, "error_type": None, "message": "", "details": {}, "expected": None,
            "libraries": LIBRARIES, **fields}


def _report(tmp_path: Path):  # type: ignore[no-untyped-def]
    lines = []
    for probe in ("load", "forward"):
        lines += [_line("5.24.0", m, probe, "pass") for m in ("smolvlm", "llama", "qwen2")]
        lines.append(_line("5.25.0", "smolvlm", probe, "skipped", message=NEEDS_TORCHVISION,
                           details={"needs": "torchvision"}))
        said = "LlamaModel.forward() got an unexpected keyword argument 'position_ids'"
        lines.append(_line("5.25.0", "llama", probe, "fail", error_type="TypeError",
                           message=said if probe == "load" else f"not run, the load failed: {said}"))
        lines.append(_line("5.25.0", "qwen2", probe, "error", error_type="CellTimeout", message="timed out after 120 s")
                     if probe == "load" else _line("5.25.0", "qwen2", probe, "pass"))
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return build_report([path])


def test_each_root_cause_is_marked_with_its_kind(tmp_path: Path) -> None:
    causes = {c.kind: c for c in root_causes(_report(tmp_path), "5.24.0", "5.25.0")}
    assert sorted(causes) == ["dependency change", "harness error", "upstream break"]
    assert causes["dependency change"].title.startswith("smolvlm needs torchvision from 5.25.0 (SmolVLMProcessor "
                                                        "requires a video processor")
    assert causes["upstream break"].cells == ("llama-smart-default-forward", "llama-smart-default-load")
    assert "timed out" in causes["harness error"].title


def test_the_issue_names_first_bad_releases_and_the_training_libraries(tmp_path: Path) -> None:
    report = _report(tmp_path)
    causes = with_first_bad(root_causes(report, "5.24.0", "5.25.0"), {
        "llama-smart-default-load": "5.24.1", "llama-smart-default-forward": "5.25.0",  # the cells disagree
        "qwen2-smart-default-load": "5.24.1"})
    first_bad = {c.kind: c.first_bad for c in causes}
    assert first_bad == {"upstream break": None, "harness error": "5.24.1", "dependency change": None}
    libraries = {r: training_libraries(report, r) for r in ("5.25.0", "5.24.0")}
    assert libraries["5.25.0"] == "trl 1.16.0, peft 0.21.2"
    text = markdown("5.24.0", "5.25.0", causes, libraries, "check text", ["5.24.1"])
    assert "Root causes: 1 upstream breaks, 1 dependency changes, 1 harness errors. Releases between them, " \
           "bisected: 5.24.1." in text
    assert "| upstream break | " in text and "| 5.24.1 |" in text and "not bisected to one release" in text
    assert "Cells ran with trl 1.16.0, peft 0.21.2 (transformers 5.25.0)" in text


def test_nothing_is_written_when_latest_did_not_move(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(build_report([]).model_dump_json())
    out = tmp_path / "triage.md"
    assert new_release.main([str(report), str(report), str(out)]) == 0 and not out.exists()
    assert RootCause("upstream break", "t", "s", ()).first_bad is None
