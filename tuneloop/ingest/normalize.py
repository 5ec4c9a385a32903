"""Text normalization applied before dedup: equal-looking text gets one dedup key."""

from __future__ import annotations

import re
import unicodedata

_LINE_BREAKS = re.compile(r"\r\n|[\r\u2028\u2029\x85]")
# Any whitespace except the newline (tabs, vertical tabs, no-break and other Unicode spaces).
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
# C0/C1 control characters left after whitespace handling, plus zero-width space and BOM.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b\ufeff]")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, one kind of line break, collapsed spaces, no control characters, trimmed.

    Newlines survive (at most one blank line in a row) because paragraph structure
    matters to a language model; all other whitespace runs become one space.
    """
    text = _LINE_BREAKS.sub("\n", text)
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _CONTROL.sub("", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text)
    return unicodedata.normalize("NFC", text.strip())
