"""How a count is written in every report and message: '1 test', '2 tests', '1 entry', '3 entries'."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """`count` and the noun (its last word made plural unless the count is one)."""
    if count == 1:
        return f"{count} {noun}"
    plural = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
    return f"{count} {plural}"
