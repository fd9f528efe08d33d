"""The worker process: one per launched model. The server's supervisor talks to it over pipes.

The supervisor writes the launch settings as the first line on stdin, then requests; the worker answers on
its protocol pipe: progress, then ready (or a load error), then each request's messages. Every message and
its fields are in xitui/wire.py. The worker exits when stdin closes, so it never outlives its server.
"""
