"""Plate formats: region presets and custom regexes that reject junk reads and fix confusable
characters where a format forces a letter or a digit."""

from alprd.formats.formats import PRESETS, FormatChecker, FormatResult, expand_presets

__all__ = ["PRESETS", "FormatChecker", "FormatResult", "expand_presets"]
