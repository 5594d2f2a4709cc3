"""Character-level voting over the reads of one track.

Each read counts with a weight from its plate size, sharpness and detection confidence (a big,
sharp plate near the camera is worth more than a small blurred one far away). The length is voted
first; reads of another length are aligned to the winner (edit-distance alignment) and vote at the
positions they align with, at half weight, so one dropped or doubled character does not throw a
read away."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class Observation:
    text: str
    char_confidences: tuple[float, ...]
    confidence: float
    weight: float
    frame_index: int
    timestamp_ms: int
    box: tuple[int, int, int, int]
    detection_confidence: float


@dataclass(frozen=True)
class Vote:
    text: str
    char_confidences: tuple[float, ...]  # per position: agreeing evidence x share of the weighted vote
    confidence: float  # the weakest position's share
    agreeing: int  # reads whose text equals the voted text
    reads: int


def observation_weight(box: tuple[int, int, int, int], sharpness: float, detection_confidence: float,
                       full_width_px: float = 160.0, sharp_ref: float = 300.0) -> float:
    """In (0, 1]: plate width up to `full_width_px` counts fully; sharpness (variance of the
    Laplacian of the grey crop) up to `sharp_ref` raises the weight from 0.5 to 1."""
    width = max(1, box[2] - box[0])
    size = min(1.0, width / full_width_px)
    sharp = 0.5 + 0.5 * min(1.0, max(0.0, sharpness) / sharp_ref)
    return max(1e-3, size * sharp * max(0.05, detection_confidence))


def _align(a: str, b: str) -> list[int | None]:
    """For each position of a, the position of b it aligns with (None: no counterpart)."""
    n, m = len(a), len(b)
    dp = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        dp[i][0] = i
    for j in range(m + 1):
        dp[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            dp[i][j] = min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    out: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 and j > 0:
        if dp[i][j] == dp[i - 1][j - 1] + (a[i - 1] != b[j - 1]):
            out[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif dp[i][j] == dp[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return out


def vote(observations: list[Observation]) -> Vote | None:
    if not observations:
        return None
    by_len: dict[int, float] = defaultdict(float)
    for o in observations:
        by_len[len(o.text)] += o.weight * o.confidence
    # Ties go to the length of the heaviest single read, then the longer one (deterministic).
    length = max(by_len, key=lambda n: (by_len[n], n))
    same = [o for o in observations if len(o.text) == length]
    scores: list[dict[str, float]] = [defaultdict(float) for _ in range(length)]
    for o in same:
        for i, ch in enumerate(o.text):
            c = o.char_confidences[i] if i < len(o.char_confidences) else o.confidence
            scores[i][ch] += o.weight * c
    draft = "".join(max(s, key=lambda ch: (s[ch], ch)) for s in scores)
    for o in observations:
        if len(o.text) == length:
            continue
        # b positions of the other read aligned onto the draft; half weight: their length lost the vote.
        mapping = _align(draft, o.text)
        for i, j in enumerate(mapping):
            if j is not None:
                c = o.char_confidences[j] if j < len(o.char_confidences) else o.confidence
                scores[i][o.text[j]] += o.weight * 0.5 * c
    text = "".join(max(s, key=lambda ch: (s[ch], ch)) for s in scores)
    # A position's confidence: evidence from the reads that agree on it accumulates
    # (1 - prod(1 - c)), scaled by the winner's share of the weighted vote at that position.
    doubt = [1.0] * length
    for o in same:
        for i, ch in enumerate(o.text):
            if ch == text[i]:
                doubt[i] *= 1.0 - (o.char_confidences[i] if i < len(o.char_confidences) else o.confidence)
    shares = tuple(round((1.0 - doubt[i]) * scores[i][ch] / sum(scores[i].values()), 4) if scores[i] else 0.0
                   for i, ch in enumerate(text))
    agreeing = sum(1 for o in observations if o.text == text)
    return Vote(text, shares, min(shares) if shares else 0.0, agreeing, len(observations))
