"""Release sets: specifiers expand to the index's final releases; the index is asked once and cached a day."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from compat_matrix.cli import main
from compat_matrix.envs.release_sets import ReleaseIndex, ReleaseSetError, between, resolve

INDEX = ("5.6.0", "5.5.4", "5.5.0", "5.4.0", "5.3.0", "5.2.0", "5.1.0", "5.0.0", "5.0.0rc1", "4.57.6", "4.57.1",
         "4.57.0.dev0", "4.49.0")


class CountingFetch:
    def __init__(self, versions: tuple[str, ...] = INDEX, fail: bool = False):
        self.versions, self.fail, self.calls = versions, fail, 0

    def __call__(self) -> tuple[str, ...]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("could not list transformers releases from the package index: network down")
        return self.versions


def test_a_specifier_expands_to_every_final_release_in_range_oldest_first(tmp_path: Path) -> None:
    index = ReleaseIndex(tmp_path / "index.json", CountingFetch())
    resolved = resolve([">=5.0,<5.6"], index)
    assert resolved.releases == ("5.0.0", "5.1.0", "5.2.0", "5.3.0", "5.4.0", "5.5.0", "5.5.4")
    assert resolved.index_note == "package index asked now"


def test_pre_releases_only_with_the_flag(tmp_path: Path) -> None:
    index = ReleaseIndex(tmp_path / "index.json", CountingFetch())
    assert "5.0.0rc1" not in resolve(["<5.0.1"], index).releases
    assert resolve(["<5.0.1"], index, pre=True).releases == ("4.49.0", "4.57.0.dev0", "4.57.1", "4.57.6", "5.0.0rc1", "5.0.0")


def test_exact_releases_and_latest_stay_as_written_without_asking_the_index(tmp_path: Path) -> None:
    fetch = CountingFetch()
    resolved = resolve(["4.57.6", "latest"], ReleaseIndex(tmp_path / "index.json", fetch))
    assert resolved.releases == ("4.57.6", "latest") and resolved.index_note is None and fetch.calls == 0


def test_mixed_items_keep_their_order_and_drop_repeats(tmp_path: Path) -> None:
    resolved = resolve(["4.49.0", "==5.5.*", "5.5.4"], ReleaseIndex(tmp_path / "index.json", CountingFetch()))
    assert resolved.releases == ("4.49.0", "5.5.0", "5.5.4")


def test_the_index_is_asked_once_then_read_from_the_cache_for_a_day(tmp_path: Path) -> None:
    fetch = CountingFetch()
    first = ReleaseIndex(tmp_path / "index.json", fetch)
    resolve([">=5"], first)
    resolve(["<5"], first)
    assert fetch.calls == 1
    second = ReleaseIndex(tmp_path / "index.json", fetch)
    assert resolve([">=5.5"], second).index_note.startswith("package index answer cached")
    assert fetch.calls == 1
    data = json.loads((tmp_path / "index.json").read_text())
    data["fetched_at"] = time.time() - 25 * 3600
    (tmp_path / "index.json").write_text(json.dumps(data))
    resolve([">=5.5"], ReleaseIndex(tmp_path / "index.json", fetch))
    assert fetch.calls == 2, "a cache older than a day is refreshed"


def test_offline_an_old_cache_is_used_and_said(tmp_path: Path) -> None:
    cache = tmp_path / "index.json"
    cache.write_text(json.dumps({"fetched_at": time.time() - 3 * 24 * 3600, "versions": list(INDEX)}))
    resolved = resolve([">=5.5"], ReleaseIndex(cache, CountingFetch(fail=True)))
    assert resolved.releases == ("5.5.0", "5.5.4", "5.6.0")
    assert "unreachable" in resolved.index_note and "72 h ago" in resolved.index_note


def test_offline_without_a_cache_the_error_names_the_specifier(tmp_path: Path) -> None:
    with pytest.raises(ReleaseSetError, match=r"'>=5.0,<5.6' cannot be looked up: the package index cannot be reached"):
        resolve([">=5.0,<5.6"], ReleaseIndex(tmp_path / "index.json", CountingFetch(fail=True)))


def test_a_specifier_matching_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReleaseSetError, match=r"'>=9' matches no final transformers release"):
        resolve([">=9"], ReleaseIndex(tmp_path / "index.json", CountingFetch()))


def test_between_takes_either_order_and_includes_both_ends(tmp_path: Path) -> None:
    index = ReleaseIndex(tmp_path / "index.json", CountingFetch())
    assert between("5.3.0", "5.0.0", index) == ["5.0.0", "5.1.0", "5.2.0", "5.3.0"]


def test_cli_plan_expands_and_exits_2_naming_the_specifier_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path))
    fetch = CountingFetch(fail=True)
    monkeypatch.setattr("compat_matrix.envs.release_sets.index_versions", lambda pre=False: fetch())
    assert main(["plan", "--transformers", ">=5.0,<5.6"]) == 2
    assert "'>=5.0,<5.6'" in capsys.readouterr().err
    fetch.fail = False
    assert main(["plan", "--transformers", ">=5.0,<5.3", "4.57.6"]) == 0
    captured = capsys.readouterr()
    assert [row["release"] for row in json.loads(captured.out)["include"]] == ["5.0.0", "5.1.0", "5.2.0", "4.57.6"]
    assert captured.err.startswith("releases: 5.0.0, 5.1.0, 5.2.0, 4.57.6 (from >=5.0,<5.3, 4.57.6;")


def test_matrix_yaml_accepts_a_specifier_and_rejects_a_bad_one(tmp_path: Path) -> None:
    import yaml

    from compat_matrix.spec.validate import DEFAULT_MATRIX, MatrixError, load_matrix

    data = yaml.safe_load(DEFAULT_MATRIX.read_text(encoding="utf-8"))
    for name, releases in (("good", [">=5.0,<5.3", "latest"]), ("bad", [">=5.0,<<5.3"])):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**data, "transformers": releases}), encoding="utf-8")
    assert load_matrix(tmp_path / "good.yaml").transformers == (">=5.0,<5.3", "latest")
    with pytest.raises(MatrixError, match="not a PEP 440"):
        load_matrix(tmp_path / "bad.yaml")


def test_the_report_keeps_and_shows_what_a_specifier_expanded_to(tmp_path: Path) -> None:
    from reports.cli import main as report_main
    from reports.report import Report

    line = {"schema_version": 1, "env": "tf5_1_0", "transformers": "5.1.0", "transformers_requested": "5.1.0",
            "torch": "2.13.0", "python": "3.11.7", "device": "cpu", "gpu_name": None, "git_commit": None,
            "model": "llama", "hub_id": "x/y", "modality": "text", "source": "tiny", "saved_by": None,
            "strategy": "auto_causal_lm", "load_kwargs": "default", "probe": "load",
            "cell_id": "llama-auto_causal_lm-default-load", "status": "pass", "error_type": None, "message": "",
            "loaded_class": "LlamaForCausalLM", "load_path": None, "expected": None, "duration_s": 0.1,
            "peak_memory_mb": None, "dtype": "float32", "details": {}, "timestamp": "2026-01-01T00:00:00+00:00"}
    (tmp_path / "tf5_1_0.jsonl").write_text(json.dumps(line) + "\n")
    chosen = {"requested": [">=5.1,<5.2"], "releases": ["5.1.0"], "index": "package index asked now",
              "index_releases": ["5.1.0"]}
    (tmp_path / "release-set.json").write_text(json.dumps(chosen))
    assert report_main([str(tmp_path / "tf5_1_0.jsonl"), "--out", str(tmp_path / "out"),
                        "--release-set", str(tmp_path / "release-set.json")]) == 0
    assert Report.read(tmp_path / "out" / "report.json").release_set.model_dump(mode="json") == chosen
    assert "Releases asked for: &gt;=5.1,&lt;5.2 → 5.1.0 (package index asked now)" in (tmp_path / "out" / "report.md").read_text()


def test_span_is_every_final_release_from_the_oldest_to_the_newest_given() -> None:
    """What the history calls neighbours: `4.56.1` and `4.57.1` are not (4.56.2 lies between), pre-releases aside."""
    from compat_matrix.envs.release_sets import span

    index = ("4.56.0", "4.56.1", "4.56.2", "4.57.0rc1", "4.57.1", "5.0.0")
    assert span(index, ["4.57.1", "4.56.1", "latest"]) == ("4.56.1", "4.56.2", "4.57.1")
    assert span(index, ["main"]) == ()
