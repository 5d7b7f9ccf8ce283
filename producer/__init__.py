"""The producer: validate, normalize and enqueue refresh requests into Redis."""
