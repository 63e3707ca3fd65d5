"""models.training."""
