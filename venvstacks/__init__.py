"""venvstacks: layered Python environment stacks, driven by uv, in one file."""

__version__ = "0.1.0"
