"""Bots, their settings and their state, with their invariants."""
