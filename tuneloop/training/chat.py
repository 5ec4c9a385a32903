"""Render chat messages to text, shared by training and serving so both agree.

With a tokenizer chat template the template is used; without one a plain fallback format
(``### User:\\n...``) is used. ``assistant_spans`` finds the character ranges of the
assistant turns (content plus the end-of-turn marker), which training turns into labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Message = dict[str, str]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: Any, messages: Sequence[Message], *, add_generation_prompt: bool) -> str:
    """The conversation as one string (no tokenization)."""
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return str(text)
    return _render_fallback(tokenizer, messages, add_generation_prompt=add_generation_prompt)


def _render_fallback(
    tokenizer: Any, messages: Sequence[Message], *, add_generation_prompt: bool
) -> str:
    eos = getattr(tokenizer, "eos_token", None) or ""
    parts = []
    for message in messages:
        # The assistant turn ends with EOS so the model learns to stop there.
        end = eos if message["role"] == "assistant" else ""
        parts.append(f"### {message['role'].capitalize()}:\n{message['content']}{end}\n\n")
    if add_generation_prompt:
        parts.append("### Assistant:\n")
    return "".join(parts)


def assistant_spans(
    tokenizer: Any, messages: Sequence[Message]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the ``[start, end)`` character span of each assistant turn.

    A turn's span runs from the end of the prompt that precedes it (rendered with the
    generation prompt) to the end of the conversation rendered up to and including it, so
    it covers exactly what the model must generate, end-of-turn marker included.
    """
    full = render_chat(tokenizer, messages, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        span = _prefix_span(tokenizer, messages, index, full)
        if span is None or span[0] < cursor:
            # The template is not prefix-stable (e.g. it rewrites earlier turns): fall back
            # to finding the content itself after the previous turn.
            start = full.find(message["content"], cursor)
            if start < 0:
                continue
            span = (start, start + len(message["content"]))
        spans.append(span)
        cursor = span[1]
    return full, spans


def _prefix_span(
    tokenizer: Any, messages: Sequence[Message], index: int, full: str
) -> tuple[int, int] | None:
    try:
        before = render_chat(tokenizer, messages[:index], add_generation_prompt=True)
        through = render_chat(tokenizer, messages[: index + 1], add_generation_prompt=False)
    except Exception:  # a template may reject a partial conversation
        return None
    if not (full.startswith(through) and through.startswith(before)) or len(through) <= len(before):
        return None
    return len(before), len(through)
