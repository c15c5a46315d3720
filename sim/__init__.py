"""keysim's simulator and command line: the adapter that drives :mod:`protocol`."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("keysim")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
