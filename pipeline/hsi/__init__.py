"""pipeline.hsi.curate."""
