"""Tracking numbers: 80 random bits, Crockford base32, Luhn mod 32 check."""

from __future__ import annotations

from store.tracking import new_tracking_number, normalize


def test_tracking_numbers_are_long_typeable_and_checked() -> None:
    numbers = {new_tracking_number() for _ in range(2000)}
    assert len(numbers) == 2000
    n = next(iter(numbers))
    assert len(n.replace("-", "")) == 17  # 16 x 5 = 80 random bits + check
    assert normalize(n.lower().replace("-", " ")) == n
    assert normalize(n.replace("0", "o")) == n
    # Every single-character substitution is caught by the check character.
    compact = n.replace("-", "")
    for i in range(len(compact)):
        for c in "0123456789ABCDEFGHJKMNPQRSTVWXYZ":
            if c != compact[i]:
                assert normalize(compact[:i] + c + compact[i + 1 :]) is None
    assert normalize("hello") is None and normalize("U" * 17) is None
