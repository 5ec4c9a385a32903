"""Checksums that tell a real identifier from a number that merely looks like one."""

from __future__ import annotations

import string

# Issuer prefixes of the card networks people actually pay with; a random 16-digit number
# that passes Luhn (1 in 10 do) is still unlikely to start like a card.
_CARD_PREFIXES = (
    *("4", "34", "37", "36", "38", "30", "35", "6011", "62", "64", "65"),
    *(str(prefix) for prefix in [*range(51, 56), *range(2221, 2721)]),
)


def digits_only(text: str) -> str:
    return "".join(char for char in text if char.isdigit())


def luhn_valid(number: str) -> bool:
    """The Luhn mod-10 check every payment card number satisfies."""
    if not number.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def looks_like_card(number: str) -> bool:
    return 13 <= len(number) <= 19 and number.startswith(_CARD_PREFIXES) and luhn_valid(number)


_IBAN_LETTERS = {letter: str(10 + index) for index, letter in enumerate(string.ascii_uppercase)}


def iban_valid(candidate: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 = 1."""
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    if not rearranged.isalnum():
        return False
    numeric = "".join(_IBAN_LETTERS.get(char, char) for char in rearranged)
    return int(numeric) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: no area 000, 666 or 900-999, no group 00, no serial 0000."""
    return (
        area not in {"000", "666"}
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )
