"""The README a newcomer reads in two minutes: short, in the agreed order, every link inside the
repository and alive, the two commands true to the scripts, short sentences."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
SECTIONS = ["The two commands", "What you get", "Use it in your repository", "Everyday commands", "Where to read more"]


def prose(text: str) -> str:
    """The README's sentences: no code blocks, tables, headings or image lines."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    kept = [line.lstrip("-0123456789. ") for line in text.splitlines()
            if line.strip() and not line.startswith(("#", "|", "!["))]
    return " ".join(kept)


def sentences(text: str) -> list[list[str]]:
    """Each sentence as its words (a word: anything between spaces)."""
    return [s.split() for s in re.split(r"(?<=[.!?])\s+", prose(text)) if s.split()]


def test_at_most_200_lines_in_the_agreed_order() -> None:
    assert len(README.splitlines()) <= 200
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings == SECTIONS
    assert README.splitlines().index("## The two commands") <= 16, "what it is and the problem first, in about 10 lines"


def test_the_two_commands_are_the_scripts() -> None:
    block = README[README.index("## The two commands"):README.index("## What you get")]
    assert "bash scripts/matrix.sh " in block and "bash scripts/test.sh " in block
    assert (REPO / "scripts" / "matrix.sh").is_file() and (REPO / "scripts" / "test.sh").is_file()


def test_every_link_and_image_is_a_file_of_the_repository() -> None:
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    assert targets and not [t for t in targets if re.match(r"[a-z]+:", t)], "no link outside the repository"
    missing = [t for t in targets if not (REPO / t.split("#")[0]).exists()]
    assert missing == []
    assert "docs/report-first-screen.png" in targets


def test_no_measurements_or_earlier_runs_in_the_readme() -> None:
    assert "earlier run" not in README
    assert not re.search(r"\b\d+(\.\d+)? ?(s|ms|MB|GB)\b|\d,\d{3} cells", README), "timings and counts go to docs/ and bench/"


def test_sentences_are_short() -> None:
    lengths = [len(s) for s in sentences(README)]
    assert sum(lengths) / len(lengths) <= 15, sum(lengths) / len(lengths)
    assert max(lengths) <= 30, max(sentences(README), key=len)
