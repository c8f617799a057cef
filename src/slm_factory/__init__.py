"""slm-factory: documents in, a small language model that knows them out."""

__version__ = "0.1.0"
