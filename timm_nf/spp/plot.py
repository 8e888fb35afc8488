"""The paper's three-panel Signal Propagation Plot: one panel per statistic, one line per model."""
import math
import os
from typing import Optional, Sequence

from .._atomic import atomic_path
from .result import SPPResult

PANELS = (('avg_sq_mean', 'Average channel squared mean'),
          ('avg_var', 'Average channel variance'),
          ('res_avg_var', 'Residual average channel variance'))
LOG_SPAN = 1000.0  # log scale from three decades: below that a linear axis shows linear growth as a line
LINE_STYLES = ('-', '--', '-.', ':')  # identical curves (a port and its original) stay visible


def plot_spp(results: Sequence[SPPResult], path: str, title: Optional[str] = None, dpi: int = 100) -> str:
    """Draw the figure to `path` (format from the extension) through a temporary file; returns `path`."""
    import matplotlib
    matplotlib.use('Agg')  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError('plot_spp needs at least one SPPResult')
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    shared_starts = len({tuple(r.stage_starts()) for r in results}) == 1
    for ax, (column, label) in zip(axes, PANELS):
        positive = []
        for i, result in enumerate(results):
            color = f'C{i % 10}'
            values = result.column(column)
            xs = [row.index for row, v in zip(result.rows, values) if not math.isnan(v)]
            ys = [v for v in values if not math.isnan(v)]
            positive += [v for v in ys if v > 0]
            ax.plot(xs, ys, color=color, ls=LINE_STYLES[i % len(LINE_STYLES)], lw=1.4,
                    marker='.' if len(xs) < 60 else None, ms=4, label=result.model)
            if not shared_starts:
                for start in result.stage_starts():
                    ax.axvline(start - 0.5, color=color, ls=':', lw=0.8, alpha=0.6)
        if shared_starts:
            for start in results[0].stage_starts():
                ax.axvline(start - 0.5, color='0.55', ls=':', lw=0.9)
        ax.set_yscale(y_scale(positive))
        ax.set_title(label, fontsize=11)
        ax.set_xlabel('block index (0 = stem; dotted: stage boundaries)')
        ax.grid(alpha=0.25)
    axes[0].legend(fontsize=9, loc='best')
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=os.path.splitext(path)[1][1:] or 'png')
    finally:
        plt.close(fig)
    return path


def figure_formats() -> Sequence[str]:
    """File extensions the figure can be written as (matplotlib's Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    return sorted(FigureCanvasAgg.get_supported_filetypes())


def y_scale(values: Sequence[float]) -> str:
    """'log' when the positive values span LOG_SPAN or more (zeros are then left off the panel), else 'linear'."""
    positive = [v for v in values if v > 0]
    return 'log' if positive and max(positive) / min(positive) >= LOG_SPAN else 'linear'
