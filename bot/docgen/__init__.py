"""Documentation pages written from the code and the measurements, so they cannot drift.

`dispatchbot docs` writes them; a test compares the committed pages with what it writes.
"""
