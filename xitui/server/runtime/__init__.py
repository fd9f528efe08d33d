"""Running models: the supervisor and its scheduler (load on request, LRU, ttl, restore), launch plans,
worker processes and their restarts, the warm process workers are forked from."""
