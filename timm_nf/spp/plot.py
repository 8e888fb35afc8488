"""The paper's three-panel Signal Propagation Plot: one panel per statistic, one line per model."""
import io
import math
import os
from typing import Optional, Sequence

from .._arguments import BadArgument, first_line, require_type, require_whole
from .._atomic import atomic_path
from .result import BlockStats, SPPResult

PANELS = (('avg_sq_mean', 'Average channel squared mean'),
          ('avg_var', 'Average channel variance'),
          ('res_avg_var', 'Residual average channel variance'))
LOG_SPAN = 1000.0  # log scale from three decades: below that a linear axis shows linear growth as a line
LINE_STYLES = ('-', '--', '-.', ':')  # identical curves (a port and its original) stay visible


def plot_spp(results: Sequence[SPPResult], path: str, title: Optional[str] = None, dpi: int = 100) -> str:
    """Draw the figure to `path` (format from the extension) through a temporary file; returns `path`.

    TypeError / ValueError name the argument: results that are not SPPResults, a path whose folder is missing or
    whose format cannot be written, a title that cannot be drawn, a dpi out of range.
    """
    path = _check_plot_arguments(results, path, title, dpi)
    fig = _draw(results, title)
    try:
        with atomic_path(path) as tmp:
            _save(fig, tmp, _format(path), dpi, title)
    finally:
        _close(fig)
    return path


def check_drawable(path: str, title: Optional[str] = None, dpi: int = 100) -> None:
    """Rehearse the drawing: a small figure with this title, saved in this format to memory; BadArgument (path,
    title) when it cannot be. Run it before long measurements."""
    path = _check_plot_arguments(None, path, title, dpi)
    fig = _draw([SPPResult('check', [BlockStats(0, 0, 0, 0.0, 1.0), BlockStats(1, 1, 0, 0.0, 1.04, 1.0)])], title)
    try:
        _save(fig, io.BytesIO(), _format(path), dpi, title)
    finally:
        _close(fig)


def _check_plot_arguments(results, path, title, dpi) -> str:
    if results is not None:
        if isinstance(results, SPPResult) or not isinstance(results, (list, tuple)) \
                or not all(isinstance(r, SPPResult) for r in results):
            raise TypeError(f'results must be a list of SPPResult (from signal_propagation), got '
                            f'{type(results).__name__}')
        if not results:
            raise BadArgument('results', 'plot_spp needs at least one SPPResult in {arg}')
    require_type('path', path, (str, os.PathLike), 'a file name such as "spp.png"')
    path = os.fspath(path)
    if title is not None:
        require_type('title', title, str, 'None or a string')
    require_whole('dpi', dpi, 10, 2000)
    if _format(path) not in figure_formats():
        raise BadArgument('path', f'cannot draw a figure as {path!r}: {{arg}} must end in '
                                  f'.{", .".join(figure_formats())}')
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BadArgument('path', f'{{arg}} {path}: folder {folder} does not exist')
    if os.path.isdir(path):
        raise BadArgument('path', f'{{arg}} {path} is a folder: expected a file name such as spp.png')
    return path


def _format(path: str) -> str:
    return os.path.splitext(path)[1][1:].lower()


def _draw(results: Sequence[SPPResult], title: Optional[str]):
    import matplotlib
    matplotlib.use('Agg')  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

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
    return fig


def _save(fig, target, fmt: str, dpi: int, title: Optional[str]) -> None:
    try:
        fig.tight_layout()
        fig.savefig(target, dpi=dpi, format=fmt)
    except ValueError as e:  # matplotlib's mathtext: a title with unbalanced $...$ or an unknown \command
        if title is None:
            raise
        reason = str(e).strip().splitlines()[-1][:160]
        raise BadArgument('title', f'{{arg}} {title!r} cannot be drawn as mathtext: {reason}') from None
    except (RuntimeError, OSError) as e:  # e.g. .pgf needs a LaTeX installation
        raise BadArgument('path', f'cannot write a .{fmt} figure here ({{arg}}): '
                                  f'{first_line(e)}') from None


def _close(fig) -> None:
    import matplotlib.pyplot as plt
    plt.close(fig)


def figure_formats() -> Sequence[str]:
    """File extensions the figure can be written as (matplotlib's Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    return sorted(FigureCanvasAgg.get_supported_filetypes())


def y_scale(values: Sequence[float]) -> str:
    """'log' when the positive values span LOG_SPAN or more (zeros are then left off the panel), else 'linear'."""
    positive = [v for v in values if v > 0]
    return 'log' if positive and max(positive) / min(positive) >= LOG_SPAN else 'linear'
