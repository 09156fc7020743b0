"""What both halves of the project share, and nothing else: the user-facing error,
where data lives, atomic file writes, the command-line error wrapper, and the
reader of a synthetic world's stored click model (``truth``).

``seeds_gen`` (raw data) and ``models_py`` (learning) import from here, never
from each other's internals.
"""
