"""The run folder's picture: training loss per step and val recall per epoch."""

from __future__ import annotations

import json
from pathlib import Path


def plot_curves(log_path: Path, png_path: Path) -> Path | None:
    """Draw ``log.jsonl`` into a PNG; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if r["type"] == "step"]
    epochs = [r for r in rows if r["type"] == "epoch" and r.get("metrics")]
    figure, (loss_axis, recall_axis) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axis.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8)
    loss_axis.set(title="training loss", xlabel="step", ylabel="InfoNCE")
    for direction, label in (("image_to_text", "image→text"), ("text_to_image", "text→image")):
        for k, style in (("R@1", "-o"), ("R@10", "--s")):
            values = [r["metrics"][direction][k] for r in epochs]
            recall_axis.plot(
                [r["epoch"] for r in epochs], values, style, ms=3, label=f"{label} {k}"
            )
    recall_axis.set(title="val recall", xlabel="epoch", ylabel="%")
    if epochs:
        recall_axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return png_path
