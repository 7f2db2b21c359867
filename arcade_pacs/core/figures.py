"""Figures for the model card, README and admin: one place that sets up and saves matplotlib."""

from __future__ import annotations

from pathlib import Path


def subplots(*args, **kwargs):
    """``matplotlib.pyplot.subplots`` on the headless Agg backend (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(fig, path: Path) -> Path:
    """Lay out, write as PNG (creating the folder) and close ``fig``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path



def figure(figsize: tuple[float, float], dpi: int = 100):
    """A matplotlib ``Figure`` made without pyplot: its state is its own, so threads serving
    HTTP requests can draw at the same time (pyplot's global figure list is not thread-safe)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi, layout="tight")


def png_bytes(fig) -> bytes:
    """``fig`` (from :func:`figure`) as PNG bytes."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
