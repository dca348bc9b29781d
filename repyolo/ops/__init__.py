"""Box geometry and post-processing operators (pure tensor code, no model state)."""
