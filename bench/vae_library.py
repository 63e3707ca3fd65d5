"""Write the physics expert's spectral library CSV from the earthlib spectra the demo scene uses.

The demo scene (``pipeline/synthetic.py``) draws every class from a pool of real earthlib
spectra. This writes one endmember per pool: the pool's mean spectrum on the scene's 1 nm
grid (350-2500 nm), as ``wavelength_nm`` + one column per pool (class names plus the three
background pools), i.e. the CSV layout ``models.vae.read_library_csv`` reads::

    PYTHONPATH=. python bench/vae_library.py --out data/vae/demo_library.csv [--step 5]

(``models/`` never imports ``pipeline/``; this helper lives in ``bench/`` for that reason.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.vae.library import SpectralLibrary, write_library_csv
from pipeline.synthetic.hsi_layout import HR_GRID_NM
from pipeline.synthetic.spectra import POOL_NAMES, library


def demo_library(step_nm: int = 5) -> SpectralLibrary:
    """Pool-mean earthlib spectra of the demo scene, every ``step_nm`` nm."""
    lib = library()
    wl = np.asarray(HR_GRID_NM, dtype=np.float64)
    keep = np.arange(0, wl.size, max(1, step_nm))
    spectra = np.stack(
        [lib.spectra[s : s + n].mean(0)[keep] for s, n in zip(lib.starts, lib.counts, strict=True)]
    )
    return SpectralLibrary(wavelength_nm=wl[keep], spectra=spectra, names=[str(p) for p in POOL_NAMES])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/vae/demo_library.csv"))
    ap.add_argument("--step", type=int, default=5, help="wavelength step (nm) of the CSV")
    args = ap.parse_args()
    path = write_library_csv(args.out, demo_library(args.step))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
