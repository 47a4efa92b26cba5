"""Images: references, the registry protocol, archives, layers and the store."""
