"""The dashboard's widgets, one family per module."""
