"""Reads of leaders, follows and leader statistics."""
