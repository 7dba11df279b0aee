"""tamas package."""
