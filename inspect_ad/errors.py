"""One exception type for problems the user can fix; the CLI prints its message on one line."""


class InspectError(Exception):
    """A user-facing error: the message names the file or option and says how to fix it."""

    exit_code = 2


class ConfigError(InspectError, ValueError):
    """A setting with a value it cannot take, raised by the config that owns it (one line naming
    the setting, its value and what it must be). A ValueError too, for code that catches those."""


class NotFittedError(InspectError, AttributeError):
    """A detector asked for scores, maps or a save before :meth:`fit` (scikit-learn's name)."""


def printable(text: str) -> str:
    """``text`` as it can be printed and encoded: the bytes of a file name that is not UTF-8 (which
    Python holds as surrogates) shown as ``\\xNN``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:   # a lone surrogate of another origin (a JSON "\ud800")
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def one_line(e: BaseException | str) -> str:
    """An error's message on one printable line."""
    return printable(" ".join(str(e).split()))
