"""The HTTP edge: who may connect and send what (guard, connection limits, the API key), bodies read and
checked off the event loop, and the fast path for inference routes."""
