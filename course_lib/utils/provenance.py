"""Numbers typed into the book's prose: find every digit in a markdown cell that no code produced.

The book's rule is that every number is computed on the page or read from a committed results
file. Prose may still hold digits that are not results: years, citations, equation constants,
chapter and section numbers, model and layer names (ResNet-50, P2, float32), square grids such
as 28 × 28. :func:`typed_numbers` removes those by rule and returns what is left; the few
constants left after that (a torchvision default, a definition) are listed with their reason in
``book/digits_allowed.yml`` as a phrase that must occur in that chapter's prose
(``tests/test_digit_provenance.py`` reads it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: Spans whose digits are not results, removed before numbers are searched.
EXEMPT_SPANS = (
    re.compile(r"\$\$.*?\$\$", re.S),  # display math: equation constants
    re.compile(r"\$[^$\n]+\$"),  # inline math
    re.compile(r"```.*?```", re.S),  # fenced code: commands
    re.compile(r"`[^`\n]+`"),  # inline code: identifiers, flags, file names
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"https?://\S+"),
    re.compile(r"\{cite\w*\}`[^`]*`"),
)
#: Digits that are names, not quantities, removed after the spans above.
EXEMPT_TOKENS = (
    re.compile(r"^#+ .*$", re.M),  # headings: chapter and section numbers
    re.compile(r"^\s*\d+\.\s", re.M),  # ordered-list markers
    re.compile(r"\b(?:19|20)\d\d[a-z]?\b"),  # years (and "2017a")
    re.compile(r"#\d+"),  # issue and pull-request numbers
    re.compile(r"§\s?\d+(?:\.\d+)*"),  # section references
    re.compile(r"\b(?:Week|week|Chapter|chapter|Section|section|Table|table|Figure|figure|Appendix|step|Step)\s+\d+\b"),
    re.compile(r"\b(?:row|column|channel|track|class|frame|rank|slot|level|person|stride)\s+\d+\b"),  # indices and strides
    re.compile(r"\bstride of \d+"),
    re.compile(r"\b\d+(?:st|nd|rd|th)\b"),  # ordinals: the 90th percentile
    re.compile(r"\b\d+-(?:bit|D)\b"),  # 8-bit integers, a 2-D tensor
    re.compile(r"\(\d\)"),  # enumerators: (1), (2)
    re.compile(r"\b[A-Za-z][A-Za-z]*[-_]?\d[\w]*"),  # names with digits: ResNet-50, R50, P2, float32, AP50, YOLOv8n
    re.compile(r"\b(\d+)\s*[x×]\s*\1\b"),  # square grids and kernels: 28 × 28, 3x3
)
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class TypedNumber:
    path: str
    line: int
    number: str
    text: str  # the prose line it sits on

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.number!r} in: {self.text.strip()}"


def markdown_cells(path: Path) -> list[tuple[int, str]]:
    """``(first line, text)`` of each markdown cell of a py:percent chapter, or of a whole ``.md`` page."""
    lines = path.read_text().splitlines()
    if path.suffix == ".md":
        return [(1, "\n".join(lines))]
    cells, start, body = [], None, []
    for number, line in enumerate(lines, 1):
        if line.startswith("# %%"):
            if start is not None:
                cells.append((start, "\n".join(body)))
            start, body = (number + 1, []) if "[markdown]" in line else (None, [])
        elif start is not None:
            body.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
    if start is not None:
        cells.append((start, "\n".join(body)))
    return cells


def _blank(text: str, pattern: re.Pattern) -> str:
    """Replace each match by spaces of the same length (newlines kept), so line numbers survive."""
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def typed_numbers(path: Path, allowed_phrases: list[str] = (), root: Path | None = None) -> list[TypedNumber]:
    """Numbers in the prose of ``path`` that no rule exempts and no allowed phrase contains."""
    found = []
    for first_line, text in markdown_cells(path):
        stripped = text
        for pattern in EXEMPT_SPANS + EXEMPT_TOKENS:
            stripped = _blank(stripped, pattern)
        for phrase in allowed_phrases:  # found in the original text, blanked at the same place
            for match in re.finditer(re.escape(phrase), text):
                stripped = stripped[:match.start()] + " " * len(phrase) + stripped[match.end():]
        original = text.splitlines()
        for offset, line in enumerate(stripped.splitlines()):
            for match in NUMBER.finditer(line):
                name = str(path.relative_to(root)) if root else str(path)
                found.append(TypedNumber(name, first_line + offset, match.group(0), original[offset]))
    return found
