"""Seismic curation: travel times, labels, windows, signal processing, batches, the store writer."""
