"""Hotlist (watch list): a local CSV or YAML file matched against every read event."""

from alprd.hotlist.hotlist import Hotlist, HotlistEntry, HotlistMatch, load_hotlist, normalise_plate

__all__ = ["Hotlist", "HotlistEntry", "HotlistMatch", "load_hotlist", "normalise_plate"]
