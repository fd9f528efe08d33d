"""What the model reads and writes back: prompt templates and styles, tool-call syntaxes, reasoning
tags, JSON schemas and strict JSON, stop words, and how large model input may be."""
