"""The embedded server: Xinference's REST API over a supervisor of worker processes."""
