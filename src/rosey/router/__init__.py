"""Chat command parsing and dispatch, reply routing."""
