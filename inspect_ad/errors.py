"""One exception type for problems the user can fix; the CLI prints its message on one line."""


class InspectError(Exception):
    """A user-facing error: the message names the file or option and says how to fix it."""

    exit_code = 2
