"""Tools that ship with strongroom (run through the governed execution lane)."""
