"""Web: the HTTP side, serving people (unsubscribe) and template authors (the preview server) over the same core."""
