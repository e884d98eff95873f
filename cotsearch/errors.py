"""Errors that are the user's to fix. The command line prints their message, one line
that names the file or field and what was expected, and exits with code 2."""


class CotsearchError(Exception):
    """Base of every user-facing error."""


class SpecError(CotsearchError, ValueError):
    """A bad spec, search space, preset name or YAML file."""


class ModelFileError(CotsearchError):
    """A model file that is missing, truncated, tampered with or not cotsearch's."""


class CheckpointError(CotsearchError):
    """A checkpoint (official, or of a training run) that cannot be read or does not fit."""


class DataError(CotsearchError):
    """A data set that is missing, truncated or malformed."""
