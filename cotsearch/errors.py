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


class SearchInterrupted(CotsearchError):
    """Ctrl-C, SIGTERM or SIGHUP (cotsearch.process.signals) stopped a search or a sweep; what
    had finished is kept, and the running trials are recorded as interrupted."""


def user_error(error: BaseException) -> CotsearchError | None:
    """The CotsearchError in an exception's chain, if any (Ray wraps what a trial or a searcher
    raised): it is the user's to fix."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CotsearchError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
