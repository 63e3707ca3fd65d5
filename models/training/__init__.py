"""Training: the shared core (:mod:`.loop`), the HSI and seismic trainers (:mod:`.hsi`, :mod:`.seismic`), K HSI trials at once (:mod:`.stacked`, :mod:`.stacked_hydra`)."""
