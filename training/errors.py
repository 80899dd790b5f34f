"""Domain errors. Library code raises these; the CLI prints one line and exits non-zero."""

__all__ = [
    "BadBundle",
    "BadDataFile",
    "BadSample",
    "ExportFailed",
    "MissingDependency",
    "NaeError",
    "TooFewEvents",
    "require",
]


class NaeError(Exception):
    """Base class of every error the ``nae`` command reports as one line."""


class BadDataFile(NaeError):
    """An input file is missing keys, has wrong shapes or holds non-finite values."""


class BadSample(NaeError):
    """An array of scores or inputs is empty, has the wrong shape or holds non-finite values."""


class TooFewEvents(BadSample):
    """A sample is too small for the efficiency asked of it (too few events would pass); the
    message says how many events are needed."""


class BadBundle(NaeError):
    """A bundle directory the service would refuse: unreadable or invalid bundle.json, a file
    that does not match its sha256, or an ONNX graph that breaks the bundle's interface."""


class ExportFailed(NaeError):
    """An export cannot produce a faithful bundle: the graph differs from torch, its interface
    breaks the bundle contract, or the output directory already holds a bundle."""


class MissingDependency(NaeError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str):
    """Import ``module`` or raise ``MissingDependency`` naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{module} is not installed: pip install 'nae-trigger[{extra}]'"
        ) from exc
