"""lpzero_queue: zero-cost proxy search for language-model NAS, as a batch system."""

__version__ = "0.1.0"

__all__ = ["__version__"]
