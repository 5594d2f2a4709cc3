"""The recognition interfaces: a plate detector and a plate reader, and what they return."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

# The OCR alphabet is fixed by the shipped model's manifest; this is the default the project trains.
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PAD = "_"
MAX_PLATE_CHARS = 10  # the reader's character slots


def is_plate_text(text: str) -> bool:
    """A text the reader can give: 1 to MAX_PLATE_CHARS characters of ALPHABET."""
    return 1 <= len(text) <= MAX_PLATE_CHARS and all(c in ALPHABET for c in text)


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels
    confidence: float


@dataclass(frozen=True, eq=False)
class SlotEvidence:
    """A slot reader's output for one crop: probs[slot, class], class i being chars[i], the pad among
    them. Kept beside a read so that plate formats can decode the most probable text that fits a
    plate layout (alprd.formats.layouts)."""

    probs: np.ndarray
    chars: str
    pad: str


@dataclass(frozen=True)
class PlateText:
    text: str
    confidence: float  # product-free summary: the weakest character's confidence
    char_confidences: tuple[float, ...]
    # What the text was decoded from, where the reader has slots; not part of the read's identity.
    slots: SlotEvidence | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PlateRead:
    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    box: tuple[int, int, int, int]
    detection_confidence: float
    slots: SlotEvidence | None = field(default=None, compare=False, repr=False)  # as PlateText.slots


class PlateDetector(ABC):
    name: str
    version: str

    @abstractmethod
    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Plates in a BGR frame, most confident first."""


class PlateVerifier(ABC):
    """A second opinion on detector boxes: is each one a plate?"""

    name: str
    version: str
    threshold: float  # probability under which a box is taken for no plate

    @abstractmethod
    def plate_probability(self, frame: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[float]:
        """For each box of a BGR frame, the probability that it holds a plate (batched)."""


class PlateOCR(ABC):
    name: str
    version: str

    @abstractmethod
    def read(self, crops: list[np.ndarray]) -> list[PlateText]:
        """Text of each BGR plate crop, in the same order (batched)."""
