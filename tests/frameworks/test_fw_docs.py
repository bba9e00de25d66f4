"""docs/frameworks.md: every snippet marked ``<!-- from: PATH -->`` is the code that the framework tests run."""

from __future__ import annotations

import re

from tests.helpers.net import ROOT

DOC = ROOT / "docs" / "frameworks.md"
SNIPPET = re.compile(r"<!-- from: (?P<path>\S+) -->\n```\w*\n(?P<code>.*?)\n```", re.DOTALL)


def lines(text: str) -> list[str]:
    """The lines of ``text`` without indentation (a snippet may be cut from inside a block)."""
    return [line.strip() for line in text.splitlines()]


def contains(haystack: list[str], needle: list[str]) -> bool:
    """Whether ``needle`` occurs in ``haystack`` as consecutive lines."""
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def test_every_marked_snippet_is_taken_verbatim_from_its_file() -> None:
    """Each marked snippet's lines appear, in order and consecutively, in the file it names."""
    snippets = list(SNIPPET.finditer(DOC.read_text()))
    assert len(snippets) >= 10, "docs/frameworks.md lost its marked snippets"
    for found in snippets:
        source = ROOT / found["path"]
        assert source.is_file(), f"{found['path']} does not exist"
        assert contains(lines(source.read_text()), lines(found["code"])), (
            f"a snippet of docs/frameworks.md differs from {found['path']}:\n{found['code']}"
        )


def test_every_framework_has_a_section() -> None:
    """The page covers each framework the tests run."""
    titles = set(re.findall(r"^## (.+)$", DOC.read_text(), re.MULTILINE))
    for title in ("Django", "gunicorn", "uvicorn", "FastAPI", "Celery", "structlog", "loguru"):
        assert title in titles, f"no section for {title}"
    assert "multiprocessing: spawn and forkserver children" in titles
