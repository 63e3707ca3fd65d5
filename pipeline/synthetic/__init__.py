"""pipeline.synthetic.hsi_scene."""
