"""Core: specs, registry, catalog, prompts, files and config. No UI, web framework or model library."""
