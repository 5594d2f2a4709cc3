"""What becomes of a camera's reads: tracking into one event per pass, plate formats, the hotlist.

Each section can be set unit-wide and overridden per camera; `where` names the one being checked."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alprd.errors import ConfigError


@dataclass(frozen=True)
class TrackingConfig:
    """One read event per vehicle pass (see README, "Tracking, formats and hotlist")."""

    enabled: bool = True  # false: every confident frame read is its own event (no voting)
    max_missed_s: float = 1.0  # a track ends when not seen this long (video time for files)
    max_missed_frames: int = 0  # ... or this many frames; 0: time only
    parked_missed_s: float = 15.0  # a parked plate hidden by traffic keeps its track this long; 0: off
    min_iou: float = 0.1
    first_read_min_frames: int = 2  # reads agreeing with the vote before the first read goes out
    first_read_min_confidence: float = 0.7  # and the vote's weakest character at least this
    update: Literal["always", "on_change", "never"] = "on_change"
    update_min_gain: float = 0.1  # on_change: a confidence change this big counts as a change
    end_read_min_confidence: float = 0.5  # floor for a track that never got confident
    max_observations: int = 60
    # The same plate read again by this camera within this many seconds of its pass's last sighting
    # is that pass, not a new one (a track broken by occlusion, a missed stretch, a parked car);
    # it gets no event of its own. 0: off.
    repeat_window_s: float = 10.0
    # Work that follows the tracks (alprd/tracking/plan.py, docs/throughput.md): between whole-frame
    # detections the detector looks only around open tracks, and a settled track is not read again
    # until its plate has grown. false: every analysed frame is detected whole and every plate read.
    follow: bool = True
    full_frame_every: int = 3  # whole-frame detection on every Nth frame while a track is unsure or none is open
    full_frame_every_settled: int = 12  # ... when every open track is settled (a multiple of full_frame_every)
    window_margin: float = 1.5  # plate widths around a track's predicted box that its window covers
    follow_lag_frames: int = 4  # a frame is planned from the tracks this many frames earlier (>= workers)
    settle_reads: int = 3  # reads agreeing with the published vote before a track is settled
    settle_share: float = 0.8  # ... at least this share of its reads
    settle_confidence: float = 0.9  # ... and the vote's weakest position at least this
    reread_growth: float = 1.3  # a settled plate is read again once this many times as wide as at its widest read

    def validate(self, where: str) -> None:
        if self.max_missed_s <= 0 or self.max_missed_frames < 0:
            raise ConfigError(f"{where}.max_missed_s/max_missed_frames: need a positive time and "
                              f"0 or more frames, got {self.max_missed_s} / {self.max_missed_frames}")
        if self.first_read_min_frames < 1:
            raise ConfigError(f"{where}.first_read_min_frames: {self.first_read_min_frames} must be at least 1")
        for key in ("min_iou", "first_read_min_confidence", "end_read_min_confidence", "update_min_gain"):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{where}.{key}: {v} must be between 0 and 1")
        if self.max_observations < 1:
            raise ConfigError(f"{where}.max_observations: {self.max_observations} must be at least 1")
        if self.repeat_window_s < 0:
            raise ConfigError(f"{where}.repeat_window_s: {self.repeat_window_s} must be 0 (off) or more seconds")
        self._validate_follow(where)

    def _validate_follow(self, where: str) -> None:
        for key in ("full_frame_every", "follow_lag_frames", "settle_reads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key}: {getattr(self, key)} must be at least 1")
        if self.full_frame_every_settled % self.full_frame_every or self.full_frame_every_settled < 1:
            raise ConfigError(f"{where}.full_frame_every_settled: {self.full_frame_every_settled} must be a positive "
                              f"multiple of full_frame_every ({self.full_frame_every})")
        for key in ("settle_share", "settle_confidence"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{where}.{key}: {getattr(self, key)} must be between 0 and 1")
        if self.window_margin <= 0 or self.reread_growth < 1.0:
            raise ConfigError(f"{where}.window_margin/reread_growth: need a positive margin and a growth of at "
                              f"least 1, got {self.window_margin} / {self.reread_growth}")


@dataclass(frozen=True)
class FormatsConfig:
    presets: tuple[str, ...] = ("us", "br", "eu")  # empty list and no custom: any text passes
    custom: tuple[str, ...] = ()  # regexes over the plate without spaces or dashes
    fix_confusables: bool = True
    max_fixes: int = 1  # two look-alikes in one read are left to the vote over frames
    reject_unmatched: bool = True  # false: publish anyway, with "format": null

    def validate(self, where: str) -> None:
        # Imported here: alprd.formats is the reader of this section, loaded only when a config is checked.
        from alprd.formats.formats import FormatChecker

        if not 0 <= self.max_fixes <= 3:
            raise ConfigError(f"{where}.max_fixes: {self.max_fixes} must be between 0 and 3")
        FormatChecker(self.presets, self.custom, where=where)  # unknown preset, bad regex


@dataclass(frozen=True)
class HotlistConfig:
    path: str = ""  # CSV or YAML; empty: no hotlist
    max_edits: int = 1
    confusables: bool = True
    reload_check_s: float = 2.0  # how often the file's mtime is checked

    def validate(self, where: str, base: Path) -> None:
        if self.max_edits not in (0, 1, 2):
            raise ConfigError(f"{where}.max_edits: {self.max_edits} must be 0, 1 or 2")
        if self.reload_check_s <= 0:
            raise ConfigError(f"{where}.reload_check_s: {self.reload_check_s} must be positive")
        if self.path:
            fp = Path(self.path) if os.path.isabs(self.path) else base / self.path
            if fp.suffix.lower() not in (".csv", ".yaml", ".yml"):
                raise ConfigError(f"{where}.path: {self.path} must be a .csv or .yaml file")
