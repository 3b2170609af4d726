"""compat-matrix's version, in one place: pyproject.toml reads it for the wheel, and `--version`,
report.json's `generator` and the workflow tag `compat-matrix init` pins read it here. It lives at
the bottom layer (reports imports nothing of the project) so that every part can read it."""

VERSION = "0.1.0"


def generator() -> str:
    """What report.json's `generator` says: `compat-matrix 0.1.0`."""
    return f"compat-matrix {VERSION}"
