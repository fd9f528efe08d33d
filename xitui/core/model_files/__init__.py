"""Reading model files: inspecting a directory, a GGUF header or a hub repository, reads bounded in
size, and downloads."""
