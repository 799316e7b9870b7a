"""Generated blocks in the docs: text between ``<!-- gen:NAME -->`` and ``<!-- /gen:NAME -->`` is rebuilt from saved
result files by the script that owns NAME, never edited by hand; ``tests/test_docs_blocks.py`` checks that every
block equals its regeneration."""
from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def markers(name: str) -> tuple[str, str]:
    return f"<!-- gen:{name} -->", f"<!-- /gen:{name} -->"


def read_block(path: pathlib.Path, name: str) -> str:
    """The text of block ``name`` in ``path`` (without its markers)."""
    start, end = markers(name)
    text = path.read_text()
    if text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"{path} must hold {start} and {end} once each")
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def write_block(path: pathlib.Path, name: str, body: str) -> bool:
    """Replaces block ``name`` in ``path`` with ``body``; returns whether the file changed."""
    start, end = markers(name)
    text = path.read_text()
    read_block(path, name)  # both markers, once each
    new = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", text, flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text
