"""What the digits studies (batch-size, private) write besides their JSON: the runs table as CSV and one figure look."""
import csv
import io
from typing import Dict, Sequence

from timm_nf._atomic import atomic_path

from . import digits


def runs_csv(runs: Sequence[Dict], fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator='\n', extrasaction='ignore')  # a run may hold more
    writer.writeheader()
    writer.writerows(runs)
    return buffer.getvalue()


def finish_and_save(fig, ax, path: str, title: str, xlabel: str) -> None:
    """Top-1 axes from 0 to 100 with chance marked, the legend under the plot; written atomically as PNG, closed."""
    import matplotlib
    import matplotlib.pyplot as plt

    ax.axhline(100.0 / digits.NUM_CLASSES, color='0.5', ls=':', lw=1, label='chance')
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_ylim(0, 101)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('validation top-1 (%)')
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format='png')
    finally:
        plt.close(fig)
