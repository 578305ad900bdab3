"""One base class for every error that is the user's input (a bad file, option or folder), not a bug.

Each stage raises its own subclass with a message that names the file and the fix; the CLI prints such errors
without a traceback and exits with code 2.
"""


class PaintsegError(ValueError):
    """Bad input: the message names the file (or option) and what to do instead."""
