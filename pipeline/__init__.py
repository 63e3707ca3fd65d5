"""emin-fusion curation library: pure computation and I/O, no orchestration."""

from pipeline.version import __version__

__all__ = ["__version__"]
