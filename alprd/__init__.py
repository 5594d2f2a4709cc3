"""alprd: camera-side licence plate recognition daemon."""

__version__ = "0.1.0"
