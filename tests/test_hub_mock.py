"""The hub path against a local mock of the hub's HTTP API (HF_ENDPOINT on 127.0.0.1): prefetch
of a tiny checkpoint at a pinned revision and a `source: hub` cell reading it offline; a wrong
revision (404), a gated repo (401), a busy hub (429) and a hub that does not answer in time are
retried where that helps, then the entry is `skipped` with the reason."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.test_faults import build_llama

REPO = Path(__file__).resolve().parent.parent
SHA = "0123456789abcdef0123456789abcdef01234567"
MODELS = {"ok": "tiny-org/tiny-llama", "gated": "tiny-org/gated", "busy": "tiny-org/busy", "slow": "tiny-org/slow",
          "wrong_revision": "tiny-org/tiny-llama"}


class Hub(BaseHTTPRequestHandler):
    """Just enough of the hub API for `HfApi.model_info` and `snapshot_download`."""

    folder: Path
    requests: Counter[str]

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _refuse(self, status: int, code: str | None = None) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        body = json.dumps({"error": code or str(status)}).encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, head: bool) -> None:
        path = self.path.split("?")[0]
        repo = next((r for r in set(MODELS.values()) if f"/{r}/" in path + "/"), "")
        self.requests[repo] += 1
        if repo == "tiny-org/gated":
            return self._refuse(401, "GatedRepo")
        if repo == "tiny-org/busy":
            return self._refuse(429)
        if repo == "tiny-org/slow":
            time.sleep(8)  # past --timeout 5
            return self._refuse(503)
        if SHA not in path:
            return self._refuse(404, "RevisionNotFound")
        files = sorted(p for p in self.folder.rglob("*") if p.is_file())
        if path.startswith("/api/models/"):
            body = json.dumps({"id": repo, "sha": SHA, "siblings": [{"rfilename": str(p.relative_to(self.folder))}
                                                                     for p in files]}).encode()
            content_type = "application/json"
        else:
            name = path.split(f"/resolve/{SHA}/", 1)[1]
            body = (self.folder / name).read_bytes()
            content_type = "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Repo-Commit", SHA)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, Counter[str]]]:
    checkpoint = build_llama(tmp_path / "built")
    handler = type("TinyHub", (Hub,), {"folder": checkpoint.path, "requests": Counter()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    server.shutdown()


def matrix_file(tmp_path: Path) -> Path:
    entries = [{"key": key, "hub_id": hub_id, "modality": "text", "source": "hub",
                "revision": "f" * 40 if key == "wrong_revision" else SHA} for key, hub_id in MODELS.items()]
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump({"transformers": ["4.57.6"], "models": entries}))
    return path


def run(code: list[str], endpoint: str, tmp_path: Path, offline: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1" if offline else "0",
           "COMPAT_MATRIX_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO), "COMPAT_MATRIX_ENV": "hub"}
    env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, *code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


CELLS = '''
import json, sys
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.validate import load_matrix
from compat_tests.execute import MatrixState, run_cell
state = MatrixState(load_matrix(sys.argv[1], check_model_types=False))
print(json.dumps({key: run_cell(state, Cell(key, "explicit_class", "default", "load")) for key in sys.argv[2:]}))
'''


def test_prefetch_and_hub_cells_against_a_local_hub(hub: tuple[str, Counter[str]], tmp_path: Path) -> None:
    endpoint, requests = hub
    matrix = matrix_file(tmp_path)
    done = run(["-m", "compat_matrix.cli", "--matrix", str(matrix), "prefetch", "--timeout", "5", "--tries", "2",
                "--retry-wait", "0.1"], endpoint, tmp_path, offline=False)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "ok: tiny-org/tiny-llama@" in done.stdout
    err = done.stderr
    assert "gated: skipped: tiny-org/gated@" in err and "gated or private (401)" in err
    assert "wrong_revision: skipped:" in err and "not found (404)" in err
    assert "busy: skipped:" in err and "rate-limited (429)" in err and "(after 2 tries)" in err
    assert "slow: skipped:" in err and "(after 2 tries)" in err and "Timeout" in err
    assert requests["tiny-org/busy"] == 2 and requests["tiny-org/slow"] == 2 and requests["tiny-org/gated"] == 1

    cells = run(["-c", CELLS, str(matrix), *MODELS], endpoint, tmp_path, offline=True)
    assert cells.returncode == 0, cells.stderr[-3000:]
    records = json.loads(cells.stdout.strip().splitlines()[-1])
    assert records["ok"]["status"] == "pass", records["ok"]["message"]
    assert records["ok"]["loaded_class"] == "LlamaForCausalLM" and records["ok"]["source"] == "hub"
    for key, says in (("gated", "401"), ("wrong_revision", "404"), ("busy", "429"), ("slow", "Timeout")):
        assert records[key]["status"] == "skipped" and says in records[key]["message"], records[key]["message"]
