"""Text accuracy metrics for OCR output: edit distance and character error rate.

Used by tests and benchmarks to score OCR against known text without a third-party package.
"""

from __future__ import annotations


def levenshtein(a: str, b: str) -> int:
    """Edits (insert, delete, substitute) that turn `a` into `b`; O(len(a) * len(b)) time, O(len(b)) memory."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalize_ws(text: str) -> str:
    """Collapse runs of whitespace, so line breaks versus spaces do not count as errors."""
    return " ".join(text.split())


def cer(reference: str, hypothesis: str, *, collapse_whitespace: bool = True) -> float:
    """Character error rate: edits needed divided by the reference's length (0.0 is perfect)."""
    if collapse_whitespace:
        reference, hypothesis = normalize_ws(reference), normalize_ws(hypothesis)
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return levenshtein(reference, hypothesis) / len(reference)
