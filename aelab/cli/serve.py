"""``aelab serve``: the latent explorer web page on a local server."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from aelab.cli.common import DATA, app, err_console

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    runs: list[Path] = typer.Argument(..., help="Run folders (several: a selector switches between them)."),
    data: str = DATA,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but loopback prints a warning."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    top: int = typer.Option(16, "--top", help="Sliders for codes of over 64 elements (largest effect first)."),
    range_kind: str = typer.Option("data", "--range", help="Slider ranges: data (mean ± 2σ), prior (VAE), minmax, "
                                   "or LOW:HIGH."),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Largest image upload accepted."),
) -> None:
    """Open the latent explorer: pick an image, drag its code's sliders, watch the decode."""
    import uvicorn

    from aelab.errors import AelabError
    from aelab.serve import create_app

    if not 0 < port < 65536:
        raise AelabError(f"--port {port} is not a TCP port (1..65535)")
    local = is_loopback(host)
    app_ = create_app(runs, data=data, max_upload_mb=max_upload_mb, top=top, range_kind=range_kind,
                      allowed_hosts=LOOPBACK_NAMES if local else None)
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    typer.echo(f"aelab explorer: http://{shown}:{port}/", nl=True)
    if not local:
        err_console.print(f"aelab: warning: listening on {host}, not loopback: anyone who can reach this machine "
                          f"on port {port} can see these runs' images and use their models")
    uvicorn.run(app_, host=host.strip("[]"), port=port, log_level="warning")
