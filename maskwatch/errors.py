"""Errors that the CLI reports as one line, without a traceback."""


class MaskwatchError(Exception):
    """A problem the user can fix: bad input, bad config, missing or wrong weights.

    The CLI prints ``str(error)`` and exits non-zero; anything else is a bug and keeps its traceback.
    """


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
