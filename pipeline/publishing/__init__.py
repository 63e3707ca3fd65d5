"""pipeline.publishing."""
