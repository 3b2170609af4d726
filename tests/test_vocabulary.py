"""One vocabulary of statuses and probes, shared by the matrix file, the harness and the report."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest
from pydantic import ValidationError

from compat_matrix.spec.schema import Expectation, Matrix
from reports.results import CellResult
from reports.status import EMOJI, PROBE_ORDER, STATUS_ORDER, SYMBOL, Status


def test_status_literal_and_order_list_the_same_statuses():
    assert set(get_args(Status)) == set(STATUS_ORDER) and len(STATUS_ORDER) == len(set(STATUS_ORDER))
    assert set(SYMBOL) == set(EMOJI) == set(STATUS_ORDER)


def test_the_matrix_and_the_results_schema_use_the_one_status_type():
    assert Expectation.model_fields["status"].annotation is Status
    assert CellResult.model_fields["status"].annotation is Status


def test_the_matrix_refuses_a_status_outside_the_vocabulary():
    with pytest.raises(ValidationError):
        Expectation(status="passed", reason="r")  # type: ignore[arg-type]


def test_the_matrix_runs_the_probes_in_the_report_order():
    assert Matrix.model_fields["probes"].default == PROBE_ORDER


def test_vocabulary_and_matrix_spec_import_without_torch():
    code = ("import sys, reports.status, compat_matrix.spec.schema, compat_matrix.cli; "
            "heavy = sorted({'torch', 'transformers'} & set(sys.modules)); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_probe_module_whose_probe_has_another_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry takes each probe from the module named as it: a module whose PROBE is named
    otherwise would run under one name and be reported under another."""
    import types

    from compat_tests import probes

    planted = types.ModuleType("compat_tests.probes.planted")
    planted.PROBE = types.SimpleNamespace(name="other")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "compat_tests.probes.planted", planted)
    with pytest.raises(ImportError, match="compat_tests/probes/planted.py's PROBE is named 'other': name it 'planted'"):
        probes._probe("planted")
    assert tuple(probes.PROBES) == PROBE_ORDER
