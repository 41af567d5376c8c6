"""Images: build, pull, pin, list, prune, and sharing a module as an image."""
