"""models/manifest.json: which ONNX files the unit runs, checked by sha256 before loading."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alprd.errors import ModelError


@dataclass(frozen=True)
class WidthBin:
    min_px: float
    max_px: float | None  # None: no upper bound
    rate: float | None  # None: no plate of that width in the measurement
    plates: int

    def holds(self, width: float) -> bool:
        return width >= self.min_px and (self.max_px is None or width < self.max_px)


@dataclass(frozen=True)
class WidthCurve:
    """A detector's measured detection rate per plate width (alprd_train.width_report): plates of
    `min_px`..`max_px` px in a `frame_width` px frame, the detector at `input_width`."""

    bins: tuple[WidthBin, ...]
    frame_width: int
    input_width: int
    split: str = ""
    scenes: int = 0

    def rate_at(self, width: float) -> float | None:
        return next((b.rate for b in self.bins if b.holds(width)), None)


def width_curve(raw: Any, where: str) -> WidthCurve | None:
    """The manifest's optional `detection_rate_by_width`; a ModelError naming the file if malformed."""
    if raw is None:
        return None
    try:
        bins = tuple(WidthBin(float(b["min_px"]), None if b["max_px"] is None else float(b["max_px"]),
                              None if b["rate"] is None else float(b["rate"]), int(b["plates"])) for b in raw["bins"])
        return WidthCurve(bins, int(raw["frame_width"]), int(raw["input_width"]), str(raw.get("split", "")),
                          int(raw.get("scenes", 0)))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{where}: detection_rate_by_width is malformed ({type(e).__name__}: {e}); "
                         "rewrite it with python -m alprd_train.width_report") from None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    task: str
    path: Path
    sha256: str
    input: dict[str, Any]
    alphabet: str = ""
    pad: str = "_"
    decoder: str = "slots"  # ocr: "slots" (one class per slot) or "ctc" (columns; pad is the blank)
    quantized_from: str = ""  # an int8 model's float original, a file beside it (training starts from it)
    quantized_from_sha256: str = ""  # the manifest's digest of that file
    threshold: float = 0.5  # verifier: the probability under which a box is no plate
    detection_rate_by_width: WidthCurve | None = None  # detector: measured, for the bench report

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    def float_original(self) -> ModelEntry | None:
        """The float model an int8 one was quantized from, as an entry of its own (None if not int8),
        checked against the manifest's digest as the int8 file was."""
        if not self.quantized_from:
            return None
        path = self.path.parent / self.quantized_from
        digest = checked_sha256(path, self.quantized_from_sha256 or None, f"the float original of {self.path.name}")
        return replace(self, path=path, sha256=digest, quantized_from="", quantized_from_sha256="")


def default_models_dir() -> Path:
    """The models shipped with alprd: the source tree's models/, or the installed data copy."""
    env = os.environ.get("ALPRD_MODELS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "models"
    if (here / "manifest.json").exists():
        return here
    return Path(sys.prefix) / "share" / "alprd" / "models"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checked_sha256(path: Path, expected: str | None, what: str = "model file") -> str:
    """The file's sha256, if it is there and matches the manifest's `expected` (None: the manifest
    records no digest for it); else a ModelError naming the file."""
    if not path.is_file():
        raise ModelError(f"{path}: {what} listed in the manifest is missing")
    digest = sha256_of(path)
    if expected is not None and digest != expected:
        raise ModelError(f"{path}: sha256 {digest[:12]}… does not match the manifest ({expected[:12]}…); "
                         "the file is corrupt or was replaced")
    return digest


def _manifest_models(models_dir: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The manifest's path and its models by name; a ModelError if it is missing or not JSON."""
    mf = models_dir / "manifest.json"
    try:
        manifest = json.loads(mf.read_text())
    except FileNotFoundError:
        raise ModelError(f"{mf}: model manifest not found; set models.dir to a folder holding manifest.json") from None
    except json.JSONDecodeError as e:
        raise ModelError(f"{mf}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return mf, {m["name"]: m for m in manifest.get("models", [])}


def load_entry(models_dir: Path, name: str, task: str) -> ModelEntry:
    mf, entries = _manifest_models(models_dir)
    if name not in entries:
        raise ModelError(f"{mf}: no model named {name!r}; available: {', '.join(entries) or 'none'}")
    return _checked_entry(models_dir, mf, entries[name], task)


def load_optional_entry(models_dir: Path, name: str, task: str) -> ModelEntry | None:
    """As load_entry, but None when the manifest lists no model of that name (a models folder made
    before that model existed); a listed file that is missing or altered is still an error."""
    mf, entries = _manifest_models(models_dir)
    return _checked_entry(models_dir, mf, entries[name], task) if name in entries else None


def _checked_entry(models_dir: Path, mf: Path, m: dict[str, Any], task: str) -> ModelEntry:
    name = m["name"]
    if m.get("task") != task:
        raise ModelError(f"{mf}: model {name!r} is a {m.get('task')} model, not a {task}")
    path = models_dir / m["file"]
    digest = checked_sha256(path, m["sha256"])
    return ModelEntry(name=name, version=m["version"], task=task, path=path, sha256=digest,
                      input=m.get("input", {}), alphabet=m.get("alphabet", ""), pad=m.get("pad", "_"),
                      decoder=m.get("decoder", "slots"),
                      quantized_from=m.get("quantized_from", {}).get("file", ""),
                      quantized_from_sha256=m.get("quantized_from", {}).get("sha256", ""),
                      threshold=float(m.get("threshold", 0.5)),
                      detection_rate_by_width=width_curve(m.get("detection_rate_by_width"), f"{mf}: {name}"))
