"""What both halves of the project share, and nothing else: the user-facing error,
where data lives, atomic file writes, and the command-line error wrapper.

``seeds_gen`` (raw data) and ``models_py`` (learning) import from here, never
from each other's internals.
"""
