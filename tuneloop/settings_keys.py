"""Unknown keys in settings name the closest valid key.

Every settings reader (stage overrides, ingest and connector settings, the gate policy, the
LMI options) rejects a key it does not know, so a typo such as ``retrain_thresold`` cannot
silently leave a default in place; :func:`did_you_mean` adds the likely intended key.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_key(key: str, valid: Iterable[str]) -> str | None:
    """The valid key ``key`` most likely misspells, or None when none is close."""
    matches = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(key: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'retrain_threshold'?)"``, or ``""`` when no valid key is close."""
    match = closest_key(key, valid)
    return f" (did you mean {match!r}?)" if match else ""
