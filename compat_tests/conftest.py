"""The matrix's pytest wiring lives in `compat_tests.plugin`; this file only loads it."""

pytest_plugins = ["compat_tests.plugin"]
