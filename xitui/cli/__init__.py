"""The `xitui` command line (Typer). Commands import heavy libraries only inside their bodies."""
