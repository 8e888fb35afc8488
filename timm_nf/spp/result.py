"""The tidy result of a signal propagation measurement: one row per point on the plot, CSV and JSON writers."""
import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Optional

from .._atomic import write_text_atomic

# input_seed: the Gaussian input's seed (blank for images); init_seed: the seed of the weights at initialisation
# (blank for pretrained or given weights)
COLUMNS = ('model', 'index', 'stage', 'block', 'avg_sq_mean', 'avg_var', 'res_avg_var', 'input_seed', 'init_seed')


@dataclass(frozen=True)
class BlockStats:
    """index 0 is the input of the first residual block (stage 0); index i ≥ 1 is the output of the i-th block.

    res_avg_var is NaN at index 0 and where the block type gives no access to the branch end.
    """
    index: int
    stage: int
    block: int
    avg_sq_mean: float
    avg_var: float
    res_avg_var: float = math.nan


@dataclass
class SPPResult:
    model: str
    rows: List[BlockStats]
    # input, seed (of a Gaussian input), init_seed, batch, img_size, skipinit_gain, bn_stats, blocks
    settings: Dict[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> List[float]:
        return [getattr(row, name) for row in self.rows]

    def stages(self) -> Dict[int, List[BlockStats]]:
        """The block rows (index ≥ 1) of each stage, stages and blocks in order."""
        by_stage: Dict[int, List[BlockStats]] = {}
        for row in self.rows[1:]:
            by_stage.setdefault(row.stage, []).append(row)
        return dict(sorted(by_stage.items()))

    def stage_starts(self) -> List[int]:
        """The index of each stage's first block: where a stage boundary is drawn."""
        return [row.index for prev, row in zip(self.rows, self.rows[1:]) if row.stage != prev.stage and row.stage > 1]

    def to_records(self) -> List[Dict[str, Any]]:
        seeds = dict(input_seed=self.settings.get('seed'), init_seed=self.settings.get('init_seed'))
        return [dict(model=self.model, **asdict(row), **seeds) for row in self.rows]

    def to_csv(self, path: Optional[str] = None) -> str:
        """The rows as CSV (empty res_avg_var where not measured); written to `path` when given."""
        return write_csv([self], path)

    def to_json(self, path: Optional[str] = None) -> str:
        """{model, settings, rows}; NaN becomes null. Written to `path` when given."""
        text = json.dumps(dict(model=self.model, settings=self.settings,
                               rows=[{k: _json_number(v) for k, v in asdict(row).items()} for row in self.rows]),
                          indent=1)
        if path is not None:
            write_text_atomic(path, text)
        return text

    @classmethod
    def from_json(cls, text: str) -> 'SPPResult':
        data = json.loads(text)
        rows = [BlockStats(**{k: math.nan if v is None else v for k, v in row.items()}) for row in data['rows']]
        return cls(data['model'], rows, data.get('settings', {}))


def write_csv(results: Iterable[SPPResult], path: Optional[str] = None) -> str:
    """All rows of several results in one table with a `model` column."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator='\n')
    writer.writeheader()
    for result in results:
        for record in result.to_records():
            writer.writerow({k: '' if v is None or isinstance(v, float) and math.isnan(v) else v
                             for k, v in record.items()})
    text = buffer.getvalue()
    if path is not None:
        write_text_atomic(path, text)
    return text


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
