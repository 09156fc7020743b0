"""Errors a user can cause: reported as one line and exit status 2, never a traceback."""


class UserError(Exception):
    """A problem with the user's input or environment, phrased as what to fix."""
