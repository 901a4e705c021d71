"""Every write of bots: create, start, stop, step."""
