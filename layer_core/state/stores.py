"""Opening the store a config names (kept apart from the types, which the stores import)."""

from __future__ import annotations

from layer_core.state import DEFAULT_PREFIX, DEFAULT_REDIS_TIMEOUT, StateStore, check_state_url


def open_store(
    url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = DEFAULT_REDIS_TIMEOUT
) -> StateStore:
    """The store for `url` ("memory" or a Redis URL); a Redis one connects on first use."""
    check_state_url(url)
    if url == "memory":
        from layer_core.state.memory import MemoryStore

        return MemoryStore()
    from layer_core.state.redis import RedisStore

    return RedisStore(url, prefix=prefix, timeout=timeout)
