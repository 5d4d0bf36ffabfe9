"""Customer tracking numbers: 80 random bits, Crockford base32, grouped, with a check
character, e.g. ``7K3M-9QXD-2HAT-R4BW-C``.

The check character is Luhn mod 32 over the 16 data characters, which catches every
single mistyped character and most swaps of neighbours — so a typo is refused before
any database lookup. Input is forgiving the way Crockford intends: case, hyphens and
spaces are ignored, ``O`` reads as ``0`` and ``I``/``L`` as ``1``.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
DATA_CHARS = 16  # 16 x 5 = 80 random bits
_N = len(ALPHABET)


def _luhn_check(data: str) -> str:
    """Luhn mod N check character for ``data`` (all characters in ALPHABET)."""
    total = 0
    factor = 2
    for ch in reversed(data):
        addend = factor * _VALUE[ch]
        total += addend // _N + addend % _N
        factor = 3 - factor
    return ALPHABET[(_N - total % _N) % _N]


def _group(text: str) -> str:
    return "-".join(text[i : i + 4] for i in range(0, DATA_CHARS, 4)) + "-" + text[DATA_CHARS:]


def new_tracking_number() -> str:
    bits = secrets.randbits(5 * DATA_CHARS)
    data = "".join(ALPHABET[(bits >> (5 * i)) & 31] for i in range(DATA_CHARS))
    return _group(data + _luhn_check(data))


def normalize(text: str) -> str | None:
    """The canonical grouped form of a typed tracking number, or None when it is not one
    (wrong length, foreign characters, or a failing check character)."""
    if len(text) > 64:
        return None
    compact = text.upper().replace("-", "").replace(" ", "").translate(_ALIASES)
    if len(compact) != DATA_CHARS + 1 or any(c not in _VALUE for c in compact):
        return None
    if _luhn_check(compact[:DATA_CHARS]) != compact[DATA_CHARS]:
        return None
    return _group(compact)
