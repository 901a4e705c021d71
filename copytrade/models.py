"""Leaders, follows and their terms, with their invariants."""
