"""This machine: its memory (RAM and GPUs), what a model will take (estimate), how many fit (capacity),
and the other xitui servers running on it (peers)."""
