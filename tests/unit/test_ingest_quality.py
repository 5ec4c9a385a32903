"""Quality filters (each rejection a reason code) and the features stored with a record."""

from __future__ import annotations

import pytest

from tuneloop.ingest.features import detect_language, estimate_tokens, record_features
from tuneloop.ingest.model import Candidate, Content, Message, Rejection
from tuneloop.ingest.processing import RecordProcessor
from tuneloop.ingest.quality import check_quality
from tuneloop.ingest.settings import DEFAULT_SETTINGS, IngestSettings, QualitySettings

QUALITY = QualitySettings()
SENTENCE = "Hold the reset button for ten seconds until the light blinks blue, then pair it."


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ok", "too_short"),
        ("word " * 50_000, "too_long"),
        ("1234 5678 / 9999 -- 42 %% 17 ## 0000 .. 11", "not_text"),
        ("spam " * 30, "repetitive"),
        ("buy now and save " * 10, "repetitive"),  # no word dominates; the 3-grams repeat
    ],
)
def test_each_filter_rejects_with_its_reason(text: str, reason: str) -> None:
    issue = check_quality(text, QUALITY)
    assert issue is not None and issue.reason == reason
    assert issue.detail  # says by how much


@pytest.mark.parametrize(
    "text",
    [
        "a good line of text",  # the end-to-end test's record must pass the defaults
        SENTENCE,
        "def add(a, b):\n    return a + b  # code keeps enough letters",
        "the " + " ".join(f"word{i}" for i in range(40)),
    ],
)
def test_ordinary_text_passes_the_defaults(text: str) -> None:
    assert check_quality(text, QUALITY) is None


def test_thresholds_are_settings() -> None:
    strict = QualitySettings(min_chars=50)
    assert check_quality(SENTENCE[:40], strict) is not None
    assert check_quality(SENTENCE[:40], QUALITY) is None


def test_a_language_list_rejects_other_languages_and_keeps_undetermined_texts() -> None:
    english_only = QualitySettings(languages=("en",))
    german = "Wie kann ich die Kamera zurücksetzen, wenn das Licht aus ist?"
    issue = check_quality(german, english_only)
    assert issue is not None and issue.reason == "wrong_language"
    assert "'de'" in issue.detail and "accepted: en" in issue.detail
    assert check_quality(SENTENCE, english_only) is None
    # Too little to tell: kept rather than guessed at
    assert check_quality("Reset: OK 12345 67890", english_only) is None
    # No list (the default): every language passes
    assert check_quality(german, QUALITY) is None


def test_the_processor_filters_by_language_and_stores_the_language_it_detected() -> None:
    settings = IngestSettings(quality=QualitySettings(languages=("de",)))
    processor = RecordProcessor.from_settings(settings)
    german = "Wie kann ich die Kamera zurücksetzen, wenn das Licht aus ist?"
    kept = processor.finish("drops/a.jsonl", Candidate(1, Content(text=german)), german)
    dropped = processor.finish("drops/a.jsonl", Candidate(2, Content(text=SENTENCE)), SENTENCE)
    assert isinstance(kept, Candidate) and kept.features["language"] == "de"
    assert isinstance(dropped, Rejection) and (dropped.line, dropped.reason) == (
        2,
        "wrong_language",
    )


def test_a_rejected_record_names_file_line_and_reason() -> None:
    processor = RecordProcessor.from_settings(DEFAULT_SETTINGS)
    result = processor.finish("drops/a.jsonl", Candidate(4, Content(text="ok")), '{"text":"ok"}')
    assert isinstance(result, Rejection)
    assert (result.line, result.reason) == (4, "too_short")
    assert result.message.startswith("drops/a.jsonl, line 4: text has 2 characters")


def test_features_are_stored_with_each_record() -> None:
    processor = RecordProcessor.from_settings(IngestSettings(), tags=("dataset:support",))
    chat = Candidate(
        1, Content(messages=(Message("user", "Wie kann ich das Gerät zurücksetzen?"),))
    )
    result = processor.finish("f.jsonl", chat, "raw")
    assert isinstance(result, Candidate)
    assert result.features == {
        "tokens": estimate_tokens("Wie kann ich das Gerät zurücksetzen?"),
        "chars": 36,
        "language": "de",
        "tags": ["dataset:support", "shape:chat"],
    }


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("How do I reset the camera when the light is off?", "en"),
        ("Wie kann ich die Kamera zurücksetzen, wenn das Licht aus ist?", "de"),
        ("Comment puis-je réinitialiser la caméra si le voyant est éteint ?", "fr"),
        ("¿Cómo puedo restablecer la cámara si la luz está apagada?", "es"),
        ("Come posso ripristinare la fotocamera se la luce è spenta?", "it"),
        ("Como posso redefinir a câmera se a luz estiver apagada?", "pt"),
        ("Hoe kan ik de camera resetten als het lampje uit is?", "nl"),
        ("Как сбросить камеру, если индикатор не горит?", "ru"),
        ("ライトが消えているときにカメラをリセットするには?", "ja"),
        ("如果指示灯熄灭 如何重置相机?", "zh"),
        ("표시등이 꺼져 있을 때 카메라를 재설정하려면?", "ko"),
        ("12345 67890", "und"),
    ],
)
def test_language_heuristic(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_token_estimate_is_about_four_characters_per_token_and_at_least_the_words() -> None:
    assert estimate_tokens("x" * 400) == 100
    assert estimate_tokens("a b c d e f") == 6
    assert record_features("", ())["tokens"] == 0
