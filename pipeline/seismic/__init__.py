"""pipeline.seismic.signal."""
