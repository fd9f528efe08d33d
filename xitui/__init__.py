"""xitui: a terminal-first manager for custom local models that speaks Xinference's REST API."""

__version__ = "0.1.0"
