"""CLI ``emin train vae``: the multimodal PoE-GMM VAE (registered on the ``train`` sub-app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import (
    DeviceOption,
    EpochsOption,
    ParamOption,
    PrefectOption,
    RunDirOption,
    SeedOption,
    StoreOption,
    console,
    parse_params,
    resolve_store,
)


def register(train_app: typer.Typer) -> None:
    """Add ``vae`` to the ``train`` sub-app."""

    @train_app.command("vae")
    def train_vae_cmd(
        store: StoreOption = "demo_hsi",
        decoder: Annotated[
            str, typer.Option(help="mlp | physics (linear mixing of a spectral library)")
        ] = "mlp",
        library: Annotated[
            Path | None, typer.Option(help="spectral library CSV: wavelength_nm + endmembers")
        ] = None,
        clusters: Annotated[
            int | None, typer.Option(help="mixture components (default: number of classes)")
        ] = None,
        epochs: EpochsOption = None,
        seed: SeedOption = 0,
        device: DeviceOption = "cpu",
        out: RunDirOption = None,
        param: ParamOption = None,
        use_prefect: PrefectOption = True,
    ) -> None:
        """Fit the multimodal product-of-experts VAE with a Gaussian-mixture prior; write a run folder."""
        from schemas.vae import VAETrainConfig

        fields = {
            "store": resolve_store(store, "hsi"), "decoder": decoder, "seed": seed, "device": device,
            "library_csv": None if library is None else str(library), "n_clusters": clusters,
            "epochs": epochs,
        }  # fmt: skip
        fields = {k: v for k, v in fields.items() if v is not None} | parse_params(param or [])
        run_dir = out if out is not None else Path("runs") / f"vae-{decoder}-s{seed}"
        config = VAETrainConfig.model_validate({**fields, "out_dir": str(run_dir)})
        if use_prefect:
            from flows.train_vae import train_vae_flow

            summary = str(train_vae_flow(config)["summary"])
        else:
            from flows.train_vae import vae_summary
            from models.vae import train_vae

            result = train_vae(config)
            summary = vae_summary(result.metrics, result.run_dir)
        console.print(summary)
        typer.echo(str(run_dir.resolve()))
