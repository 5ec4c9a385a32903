"""Write ``corpus.jsonl``: sentences with labelled personal data and hard negatives.

Deterministic (fixed seed): run ``python tests/data/pii/make_corpus.py`` from the repository
root and the file comes out byte for byte the same; a test checks that it does. Each line is
``{"id", "text", "spans": [{"start", "end", "type"}], "negatives": [kind, ...]}``; the spans
are exactly what must be redacted, the negatives name look-alikes that must stay.
"""

from __future__ import annotations

import ipaddress
import json
import random
import string
import sys
from collections.abc import Callable
from pathlib import Path

SEED = 20261122
POSITIVE_LINES = 330
NEGATIVE_LINES = 170
OUT = Path(__file__).with_name("corpus.jsonl")

FIRST = ["anna", "li", "omar", "sofia", "jan", "maria", "kenji", "lea", "tom", "priya", "ivan"]
LAST = ["schmidt", "nguyen", "garcia", "okafor", "rossi", "dubois", "tanaka", "smith", "kowalski"]
DOMAINS = ["example.com", "acme.example", "mail.example.org", "corp.example.co.uk", "test.io"]
B64 = string.ascii_letters + string.digits + "+/"


def luhn_check_digit(partial: str) -> str:
    total = 0
    for position, char in enumerate(reversed(partial)):
        digit = int(char)
        if position % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [f"{first}.{last}", f"{first}_{last}", f"{first}{rng.randint(1, 99)}", f"{first}+news"]
    )
    value = f"{local}@{rng.choice(DOMAINS)}"
    return value.upper() if rng.random() < 0.1 else value


def phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    area = f"{rng.randint(2, 9)}{d(2)}"
    exchange = f"{rng.randint(2, 9)}{d(2)}"
    return rng.choice(
        [
            f"+44 20 {d(4)} {d(4)}",
            f"+49 30 {d(8)}",
            f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"+81 3-{d(4)}-{d(4)}",
            f"+1-{area}-{exchange}-{d(4)}",
            f"+1 {area} {exchange} {d(4)}",
            f"({area}) {exchange}-{d(4)}",
            f"{area}-{exchange}-{d(4)}",
            f"{area}.{exchange}.{d(4)}",
            f"+41 44 {d(3)} {d(2)} {d(2)}",
            f"+44 (0)20 {d(4)} {d(4)}",
            f"+1 ({area}) {exchange}-{d(4)}",
        ]
    )


def card_number(rng: random.Random, *, valid: bool = True) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16)])
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    check = luhn_check_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def credit_card(rng: random.Random) -> str:
    number = card_number(rng)
    style = rng.choice(["plain", "spaces", "hyphens"])
    if style == "plain":
        return number
    separator = " " if style == "spaces" else "-"
    if len(number) == 15:
        return separator.join([number[:4], number[4:10], number[10:]])
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


IBAN_SHAPES = {
    "DE": (18, "n"),
    "GB": (18, "bank"),
    "FR": (23, "n"),
    "NL": (14, "bank"),
    "ES": (20, "n"),
}


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_SHAPES))
    length, shape = IBAN_SHAPES[country]
    if shape == "bank":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        bban += "".join(rng.choice(string.digits) for _ in range(length - 4))
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(length))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    value = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def ipv4(rng: random.Random) -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


def ipv6(rng: random.Random) -> str:
    address = ipaddress.IPv6Address(rng.getrandbits(128))
    if rng.random() < 0.5:
        # A documentation-style address with a run of zeros, written compressed.
        address = ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(48))
        return address.compressed
    return address.exploded if rng.random() < 0.5 else address.compressed


def ssn(rng: random.Random) -> str:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def aws_access_key_id(rng: random.Random) -> str:
    alphabet = string.ascii_uppercase + "234567"
    return rng.choice(["AKIA", "ASIA"]) + "".join(rng.choice(alphabet) for _ in range(16))


def aws_secret_key(rng: random.Random) -> str:
    while True:
        token = "".join(rng.choice(B64) for _ in range(40))
        if any(c.isupper() for c in token) and any(c.isdigit() for c in token):
            return token


def private_key(rng: random.Random) -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    lines = ["".join(rng.choice(B64) for _ in range(64)) for _ in range(rng.randint(2, 4))]
    body = "\n".join(lines)
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def password(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + "!$%*") for _ in range(12))


Generator = Callable[[random.Random], str]
# type -> (value generator, sentence templates; {} marks the value)
POSITIVES: dict[str, tuple[Generator, list[str]]] = {
    "EMAIL": (
        email,
        ["Write to {} if the order is late.", "From: Anna <{}>", "cc {} please.", "({})"],
    ),
    "PHONE": (phone, ["Call me back on {} after 5pm.", "Phone: {}", "Her number is {}."]),
    "CREDIT_CARD": (
        credit_card,
        ["I paid with card {} yesterday.", "Card number {} was charged twice.", "cc: {}"],
    ),
    "IBAN": (iban, ["Please refund to IBAN {}.", "Account {} belongs to me.", "IBAN: {}"]),
    "IPV4": (
        ipv4,
        ["The login came from {} at night.", "Server {} is down.", "client ip={}", "ssh {}:22"],
    ),
    "IPV6": (ipv6, ["Connection from {} was refused.", "Host address {} responded.", "ip6 {}"]),
    "SSN": (ssn, ["My SSN is {}.", "Social security number {} on file.", "SSN: {}"]),
    "AWS_ACCESS_KEY_ID": (
        aws_access_key_id,
        ["aws_access_key_id = {}", "The key {} was leaked in the log.", "Use access key {} here."],
    ),
    "AWS_SECRET_KEY": (
        aws_secret_key,
        ["aws_secret_access_key = {}", "secret: {}", "The token {} was pasted in chat."],
    ),
    "PRIVATE_KEY": (private_key, ["Here is my key:\n{}\nthanks", "{}", "Config:\n{}"]),
}
URL_TEMPLATES = [
    ("Connect with postgres://{user}:", "@db.internal.example:5432/app"),
    ("The feed is at https://{user}:", "@feeds.example.com/rss"),
    ("Mirror: ftp://{user}:", "@files.example.org/pub"),
]


def negative(rng: random.Random) -> tuple[str, str]:
    """A look-alike that must not be redacted, and its kind."""
    hexdigits = "0123456789abcdef"
    kind = rng.choice(
        [
            "order_number",
            "date",
            "version",
            "isbn",
            "timestamp",
            "uuid",
            "hex_hash",
            "amount",
            "zip_code",
            "mac_address",
            "short_number",
        ]
    )
    if kind == "zip_code":
        return (
            f"Ship to Springfield, IL {rng.randint(10000, 99999)}-{rng.randint(1000, 9999)}.",
            kind,
        )
    if kind == "mac_address":
        value = ":".join(f"{rng.getrandbits(8):02x}" for _ in range(6))
        return f"Device MAC {value} joined.", kind
    if kind == "short_number":
        return rng.choice(
            [
                f"Order {rng.randint(2_000_000_000, 9_999_999_999)} is ready.",
                "Call 911 in an emergency.",
                f"Ticket 555-{rng.randint(1000, 9999)} was closed.",
                f"Release {rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)} is out.",
            ]
        ), kind
    if kind == "order_number":
        number = card_number(rng, valid=False)
        if rng.random() < 0.3:
            number = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        return f"Order #{number} has shipped.", kind
    if kind == "date":
        day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1990, 2030)
        return rng.choice(
            [f"Due {year}-{month:02d}-{day:02d}.", f"Delivered on {day:02d}/{month:02d}/{year}."]
        ), kind
    if kind == "version":
        parts = ".".join(str(rng.randint(0, 20)) for _ in range(4))
        return rng.choice(
            [f"Upgrade to version {parts} today.", f"Running v{parts}.", f"Firmware {parts}."]
        ), kind
    if kind == "isbn":
        digits = "978" + "".join(rng.choice(string.digits) for _ in range(9))
        weights = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(digits))
        full = digits + str((10 - weights % 10) % 10)
        shown = f"{full[:3]}-{full[3]}-{full[4:7]}-{full[7:12]}-{full[12]}"
        return f"ISBN {rng.choice([full, shown])} is in stock.", kind
    if kind == "timestamp":
        stamp = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        return rng.choice(
            [
                f"Logged at {stamp}T{clock}Z.",
                f"at {stamp} {clock}.123",
                f"epoch {rng.randint(1_600_000_000, 1_800_000_000)}",
                f"epoch ms {rng.randint(1_600_000_000_000, 1_800_000_000_000)}",
            ]
        ), kind
    if kind == "uuid":
        groups = [8, 4, 4, 4, 12]
        value = "-".join("".join(rng.choice(hexdigits) for _ in range(n)) for n in groups)
        return f"Request {value} failed.", kind
    if kind == "hex_hash":
        length = rng.choice([7, 32, 40, 64])
        value = "".join(rng.choice(hexdigits) for _ in range(length))
        return f"commit {value} fixed it.", kind
    return f"Total {rng.randint(1, 9)},{rng.randint(100, 999)}.{rng.randint(10, 99)} EUR.", kind


def build(rng: random.Random) -> list[dict[str, object]]:
    kinds = [*POSITIVES, "PASSWORD"]
    rows: list[dict[str, object]] = []
    for index in range(POSITIVE_LINES + NEGATIVE_LINES):
        text = ""
        spans: list[dict[str, object]] = []
        negatives: list[str] = []

        def add(piece: str) -> None:
            nonlocal text
            text += (" " if text else "") + piece

        if index < POSITIVE_LINES:
            # Round-robin first type so every type gets its share, then 0-2 random extra.
            chosen = [kinds[index % len(kinds)], *rng.sample(kinds, rng.randint(0, 2))]
            for kind in dict.fromkeys(chosen):
                if kind == "PASSWORD":
                    before, after = rng.choice(URL_TEMPLATES)
                    add(before.format(user=rng.choice(FIRST)))
                    start = len(text)
                    text += password(rng)
                    spans.append({"start": start, "end": len(text), "type": kind})
                    text += after
                    continue
                make, templates = POSITIVES[kind]
                template = rng.choice(templates)
                value = make(rng)
                head, tail = template.split("{}")
                add(head) if head else None
                start = len(text) + (1 if text and not head else 0)
                if not head and text:
                    text += " "
                text += value
                spans.append({"start": start, "end": len(text), "type": kind})
                text += tail
        # Hard negatives go into their own lines and, now and then, beside real data.
        if index >= POSITIVE_LINES or rng.random() < 0.3:
            for _ in range(rng.randint(1, 2)):
                sentence, kind = negative(rng)
                add(sentence)
                negatives.append(kind)
        rows.append(
            {"id": f"pii-{index + 1:04d}", "text": text, "spans": spans, "negatives": negatives}
        )
    return rows


def render(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)


def corpus_text() -> str:
    return render(build(random.Random(SEED)))


def main() -> int:
    OUT.write_text(corpus_text(), encoding="utf-8")
    rows = [json.loads(line) for line in OUT.read_text(encoding="utf-8").splitlines()]
    spans = sum(len(row["spans"]) for row in rows)
    print(f"wrote {OUT.name}: {len(rows)} lines, {spans} labelled spans", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
