"""Features stored with each record: a token estimate, the language, source tags.

The language detector is a heuristic (script, then stopwords) so that ingestion needs no
model download; it tells the common European languages apart and names other scripts.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from typing import Any

from tuneloop.ingest.minhash import _WORD

UNDETERMINED = "und"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words(
        "the and is are was to of in that it for on with as you this be have not or by at "
        "from your can do how what i we they my a an"
    ),
    "de": _words(
        "der die das und ist nicht ein eine zu mit den von sie ich es auf für im dem sich "
        "auch wie wir bitte kann"
    ),
    "fr": _words(
        "le la les et est une un des pour que qui dans pas du en vous nous sur avec ce je "
        "il au sont"
    ),
    "es": _words(
        "el la los las y es que de en un una por para con no se del al lo como su está "
        "usted cómo qué mi puedo"
    ),
    "it": _words(
        "il lo la gli le e è di che un una per non con del della sono come si mi ti ci questo"
    ),
    "pt": _words(
        "o a os as e é de que um uma para com não do da em no na você por se como posso meu"
    ),
    "nl": _words("de het een en is van dat niet op te zijn met voor je ik ze wij er maar ook"),
}

_OWNERS: dict[str, tuple[str, ...]] = {}
for _lang, _stopwords in _STOPWORDS.items():
    for _word in _stopwords:
        _OWNERS[_word] = (*_OWNERS.get(_word, ()), _lang)

# Unicode script (the first word of a letter's character name) -> language code.
_SCRIPTS = {
    "CYRILLIC": "ru",
    "GREEK": "el",
    "ARABIC": "ar",
    "HEBREW": "he",
    "DEVANAGARI": "hi",
    "THAI": "th",
    "HANGUL": "ko",
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "CJK": "zh",
}


def estimate_tokens(text: str) -> int:
    """About four characters per token for English BPE vocabularies, never fewer tokens
    than words."""
    return max(len(_WORD.findall(text)), math.ceil(len(text) / 4))


def _script_language(text: str) -> str | None:
    sample = text[:2000]
    if sample.isascii():
        return None
    scripts: Counter[str] = Counter()
    for char in sample:
        if char.isalpha() and ord(char) > 0x024F:
            scripts[unicodedata.name(char, "UNKNOWN").split(" ")[0]] += 1
    if not scripts:
        return None
    latin = sum(1 for char in sample if char.isalpha() and ord(char) <= 0x024F)
    script, count = scripts.most_common(1)[0]
    if count < latin:
        return None
    # Kana anywhere means Japanese even when kanji (CJK) outnumber it.
    if scripts["HIRAGANA"] or scripts["KATAKANA"]:
        return "ja"
    return _SCRIPTS.get(script, UNDETERMINED)


def detect_language(text: str) -> str:
    """An ISO 639-1 code, or ``und`` when the text gives too little to go on."""
    by_script = _script_language(text)
    if by_script is not None:
        return by_script
    words = _WORD.findall(text.lower()[:5000])
    if not words:
        return UNDETERMINED
    # A stopword several languages share ("la", "de") is weaker evidence than one only
    # one language has.
    scores = dict.fromkeys(_STOPWORDS, 0.0)
    for word in words:
        owners = _OWNERS.get(word, ())
        for lang in owners:
            scores[lang] += 1 / len(owners)
    ranked = sorted(scores.values(), reverse=True)
    if ranked[0] == 0 or ranked[0] == ranked[1]:
        return UNDETERMINED
    return max(scores, key=lambda lang: scores[lang])


def record_features(
    text: str, tags: tuple[str, ...], language: str | None = None
) -> dict[str, Any]:
    return {
        "tokens": estimate_tokens(text),
        "chars": len(text),
        "language": language or detect_language(text),
        "tags": list(tags),
    }
