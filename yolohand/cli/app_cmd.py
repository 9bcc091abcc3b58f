"""`yolohand app`: launch the Streamlit app (optional extra: pip install 'yolohand[app]')."""

from __future__ import annotations

from pathlib import Path

import typer

from yolohand.cli.options import size_option


def app(
    root: Path = typer.Option(None, "--root", help="Dataset root (default: config 'root')."),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on."),
    address: str = typer.Option("127.0.0.1", "--address", help="Address to bind (0.0.0.0 to serve other machines)."),
    a: Path = typer.Option(None, "--a", help="Preselect submission CSV A."),
    b: Path = typer.Option(None, "--b", help="Preselect submission CSV B."),
    size: tuple = size_option(None, "H,W of the images the RLEs refer to [default: 2048,2048]."),
) -> None:
    """Browse the data and compare submissions in the browser (Streamlit, headless, no usage stats)."""
    import importlib.util
    import os
    import signal
    import subprocess

    from yolohand.cli.options import format_size
    from yolohand.config import default_path
    from yolohand.errors import YolohandError
    from yolohand.viz.app import INSTALL_HINT, streamlit_command

    if importlib.util.find_spec("streamlit") is None:
        raise YolohandError(INSTALL_HINT)
    for flag, path in (("--a", a), ("--b", b)):
        if path is not None and not path.is_file():
            raise YolohandError(f"{path}: {flag} file not found")
    resolved = [None if p is None else p.expanduser().resolve() for p in (a, b)]
    cmd = streamlit_command(port, address, default_path("root", root), *resolved,
                            None if size is None else format_size(size))
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    typer.echo(f"serving the yolohand app on http://{address}:{port} (Ctrl-C to stop)")
    proc = subprocess.Popen(cmd, env=env)
    # A SIGTERM to this process stops Streamlit too (Ctrl-C reaches both through the terminal).
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:
                continue  # Streamlit got the same Ctrl-C and is shutting down: wait for it
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo(f"app stopped (streamlit exit code {code})")
    if code:  # main() turns the returned Exit into the process's exit code; killed by signal N -> 128 + N
        raise typer.Exit(code if code > 0 else 128 - code)
