"""Plate tracking across frames and per-track voting: one read event per vehicle pass."""
