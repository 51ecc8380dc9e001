"""The one user-facing error type.

Anything the user can get wrong (a file, a flag, a config value) raises `AutoscaleError` with a
one-line message naming the problem. The CLI prints that line and exits with status 2; any other
exception is a bug in autoscale.
"""


class AutoscaleError(Exception):
    """Bad input or an impossible request, described in one line."""
