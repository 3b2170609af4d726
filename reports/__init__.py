"""Merge per-release results files into `report.json` and render Markdown, HTML and JUnit from it.

Reads only the results schema (see README.md); imports neither torch nor transformers, so the
report job runs in a bare Python with the package's light dependencies.
"""
