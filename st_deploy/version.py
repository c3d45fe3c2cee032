"""The package version, importable without importing the package's stages."""

__version__ = "0.1.0"
