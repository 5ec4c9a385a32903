"""Regular-expression redactors, each with the check that keeps look-alikes out.

Patterns find candidates; validators (Luhn, mod-97, SSA rules, ``ipaddress``, context
words) decide. The hard negatives in ``tests/data/pii/corpus.jsonl`` (order numbers,
dates, version strings, ISBNs, timestamps, UUIDs, hashes) are what the validators are for.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tuneloop.ingest.redaction.base import Finding
from tuneloop.ingest.redaction.checks import digits_only, iban_valid, looks_like_card, ssn_valid

# accept(match, text) -> the (start, end) to redact, or None to keep the text as it is
Accept = Callable[[re.Match[str], str], tuple[int, int] | None]


def _whole(match: re.Match[str], _text: str) -> tuple[int, int] | None:
    return match.span()


@dataclass(frozen=True)
class PatternRedactor:
    """One kind of personal data found by a regular expression and an optional check."""

    name: str
    kind: str
    pattern: re.Pattern[str]
    priority: int
    accept: Accept = _whole
    # A substring every match contains: texts without it are skipped without running the
    # pattern (most texts hold no "@", "://" or "PRIVATE KEY").
    needs: str = ""

    def find(self, text: str) -> Iterator[Finding]:
        if self.needs and self.needs not in text:
            return
        for match in self.pattern.finditer(text):
            span = self.accept(match, text)
            if span is not None:
                yield Finding(span[0], span[1], self.kind, self.priority)


def _context_before(text: str, start: int, width: int = 24) -> str:
    return text[max(0, start - width) : start].lower()


# --- keys and secrets -----------------------------------------------------------------

PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----",
    re.DOTALL,
)
# Only the password part of scheme://user:password@host is redacted: the host stays useful.
URL_PASSWORD = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:(?P<password>[^\s/@]+)@")
AWS_ACCESS_KEY_ID = re.compile(
    r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}(?![A-Z0-9])"
)
AWS_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_SECRET_CONTEXT = ("secret", "aws", "key")


def _url_password(match: re.Match[str], _text: str) -> tuple[int, int] | None:
    return match.span("password")


def _aws_secret(match: re.Match[str], text: str) -> tuple[int, int] | None:
    token = match.group()
    if all(c in string.hexdigits for c in token):
        return None  # a SHA-1 digest; a random base64 secret is all-hex with p ~ 1e-19
    if any(word in _context_before(text, match.start(), 40) for word in _SECRET_CONTEXT):
        return match.span()
    # Without a hint nearby, demand what random base64 has and hex digests lack.
    mixed = (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    )
    return match.span() if mixed else None


# --- contact details --------------------------------------------------------------------

EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"
)
# International: a leading +, a country code and 2-5 further groups (8-15 digits in all).
PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,5}(?![\w-])")
# US/NANP: (555) 123-4567, 555-123-4567, 555.123.4567, +1 555 123 4567; separators required
# so that bare 10-digit numbers (order ids, timestamps) stay.
PHONE_US = re.compile(
    r"(?<![\w+.-])(?:\+?1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|\.\d)"
)


def _phone_digits(low: int, high: int) -> Accept:
    def accept(match: re.Match[str], _text: str) -> tuple[int, int] | None:
        count = len(digits_only(match.group()))
        return match.span() if low <= count <= high else None

    return accept


# --- financial and government identifiers ------------------------------------------------

CREDIT_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
SSN = re.compile(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])")


def _card(match: re.Match[str], _text: str) -> tuple[int, int] | None:
    return match.span() if looks_like_card(digits_only(match.group())) else None


def _iban(match: re.Match[str], _text: str) -> tuple[int, int] | None:
    # The pattern may run on into a following word ("... 0859 ISBN"): the longest prefix
    # that ends between two words and passes mod 97 is the IBAN.
    value = match.group()
    ends = [len(value)] + [i for i in range(len(value) - 1, 14, -1) if value[i] == " "]
    for end in ends:
        if iban_valid(value[:end]):
            return match.start(), match.start() + end
    return None


def _ssn(match: re.Match[str], _text: str) -> tuple[int, int] | None:
    return match.span() if ssn_valid(*match.groups()) else None


# --- network addresses ------------------------------------------------------------------

IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# "1.2.3.4" after these words is a version, not a host.
_VERSION_CONTEXT = re.compile(
    r"(?:\bv|\bversion|\brelease|\bbuild|\bfirmware|\bver\.?|\bupdate to)\s*$"
)


def _ipv4(match: re.Match[str], text: str) -> tuple[int, int] | None:
    try:
        ipaddress.IPv4Address(match.group())
    except ValueError:
        return None
    if _VERSION_CONTEXT.search(_context_before(text, match.start())):
        return None
    return match.span()


def _ipv6(match: re.Match[str], _text: str) -> tuple[int, int] | None:
    candidate = match.group()
    if candidate.count(":") < 2 or len(candidate.replace(":", "")) < 2:
        return None  # "::" or a clock time like 10:30:00 is not an address
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    return match.span()


def default_redactors() -> list[PatternRedactor]:
    """Every built-in redactor, from the most specific to the most general."""
    return [
        PatternRedactor("private_key", "PRIVATE_KEY", PRIVATE_KEY, 100, needs="PRIVATE KEY-----"),
        PatternRedactor("url_password", "PASSWORD", URL_PASSWORD, 90, _url_password, "://"),
        PatternRedactor("aws_access_key_id", "AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY_ID, 85),
        PatternRedactor("aws_secret_key", "AWS_SECRET_KEY", AWS_SECRET_KEY, 80, _aws_secret),
        PatternRedactor("iban", "IBAN", IBAN, 70, _iban),
        PatternRedactor("credit_card", "CREDIT_CARD", CREDIT_CARD, 60, _card),
        PatternRedactor("email", "EMAIL", EMAIL, 50, needs="@"),
        PatternRedactor("ssn", "SSN", SSN, 45, _ssn, "-"),
        PatternRedactor("ipv6", "IPV6", IPV6, 40, _ipv6, ":"),
        PatternRedactor("ipv4", "IPV4", IPV4, 35, _ipv4, "."),
        PatternRedactor(
            "phone_international", "PHONE", PHONE_INTERNATIONAL, 30, _phone_digits(8, 15), "+"
        ),
        PatternRedactor("phone_us", "PHONE", PHONE_US, 30, _phone_digits(10, 11)),
    ]
