"""The drift report's picture: windowed AUC of served, challenger, baseline and oracle.

Needs matplotlib (Agg backend: no display). One panel per drift scenario, with the true
onset, every drift signal, promotion and rollback marked.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamproc.drift.report import ScenarioResult

__all__ = ["plot_drift_report"]


def plot_drift_report(results: Sequence[ScenarioResult], path: str) -> None:
    """Write a PNG of ``results`` (drift scenarios; stationary has a panel too) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(12, 3.6 * len(results)), squeeze=False)
    styles = {
        "oracle": ("black", "oracle (true p_complete)", "--"),
        "served": ("tab:blue", "served (with drift response)", "-"),
        "baseline": ("tab:orange", "no adaptation (champion only)", "-"),
        "challenger": ("tab:green", "challenger (shadow)", ":"),
    }
    marks = {
        "concept": ("tab:red", "v"),
        "label": ("tab:purple", "v"),
        "data": ("tab:brown", "v"),
        "challenger_started": ("tab:green", "^"),
        "promoted": ("tab:blue", "*"),
        "rolled_back": ("tab:red", "X"),
    }
    for ax, r in zip(axes[:, 0], results, strict=True):
        for key, (color, label, ls) in styles.items():
            curve = r.curves.get(key)
            if curve is not None and curve.position:
                ax.plot(curve.position, curve.auc, color=color, label=label, linestyle=ls, lw=1.3)
        if r.onset_position is not None:
            ax.axvline(r.onset_position, color="grey", lw=2, alpha=0.6, label="true onset")
        seen: set[str] = set()
        for signal, pos in zip(r.signals, r.signal_positions, strict=True):
            key = signal["action"] if signal["kind"] == "lifecycle" else signal["kind"]
            if key not in marks:
                continue
            color, marker = marks[key]
            ax.plot(
                [pos],
                [0.52 + 0.03 * list(marks).index(key)],
                marker=marker,
                color=color,
                linestyle="none",
                markersize=8,
                label=None
                if key in seen
                else f"{key} signal"
                if key in ("concept", "label", "data")
                else key,
            )
            seen.add(key)
        title = f"{r.scenario} (seed {r.seed}): delay {r.detection_delay}"
        if "baseline" in r.curves:  # a live run has no no-adaptation baseline
            title += f", recovery {r.recovery} vs baseline {r.recovery_baseline}"
        ax.set_title(title + " events")
        ax.set_xlabel("stream position (valid events, all partitions)")
        ax.set_ylabel("windowed ROC AUC (engagement)")
        ax.set_ylim(0.5, 0.95)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
