"""mlapi."""
