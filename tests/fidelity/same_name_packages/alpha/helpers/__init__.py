"""alpha's helpers (beta has a package of this name too, with other content)."""

from helpers.units import FACTOR, tag

__all__ = ["FACTOR", "tag"]
