"""Errors that the CLI reports as one line, without a traceback."""

from maskwatch.media import EXIT_ERROR, EXIT_USAGE


class MaskwatchError(Exception):
    """A problem the user can fix: bad input, bad config, missing or wrong weights.

    The CLI prints ``str(error)`` and exits with ``exit_status``; anything else is a bug and keeps its traceback.
    """

    exit_status: int = EXIT_ERROR


class UsageError(MaskwatchError):
    """The command line asks for something that cannot be done as given (e.g. two outputs naming one file)."""

    exit_status = EXIT_USAGE


class ConfigError(MaskwatchError):
    """The configuration file or a flag is invalid."""


class SourceError(MaskwatchError):
    """The input source cannot be opened or read."""


class WeightsError(MaskwatchError):
    """A model file is missing, corrupt, unverified or of the wrong architecture."""


class OutputError(MaskwatchError):
    """An output cannot be written."""


def require(*modules: str) -> None:
    """Fail before any work starts when an optional package a command will need is not installed: the import's
    :class:`ModuleNotFoundError`, which the CLI reports as one line naming the extra to install."""
    from importlib import import_module

    for name in modules:
        import_module(name)
