"""Reads of bots and their results."""
