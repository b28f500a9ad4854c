"""The one exception type for mistakes a user can fix."""
from __future__ import annotations


class SplitnnError(Exception):
    """A user error: bad input, a missing file, an impossible request.

    The message is one sentence that names the problem and says what to do;
    the CLI prints it on one stderr line and exits with code 2. Any other
    exception is a bug in splitnn.
    """
