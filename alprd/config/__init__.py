"""The unit's configuration (being split by section; see loader)."""

from alprd.config.loader import *  # noqa: F403
from alprd.config.loader import _build  # noqa: F401
