"""`reports` runs in the report job's bare Python: it must not pull in torch or transformers."""

from __future__ import annotations

import subprocess
import sys


def test_reports_imports_neither_torch_nor_transformers():
    code = (
        "import sys, reports.cli, reports.diff; "
        "heavy = sorted({'torch', 'transformers'} & set(sys.modules)); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
