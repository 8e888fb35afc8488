"""Validation results from validate/'s CSV files (timm's results format: model, top1, top5, img_size, crop_pct, ...).

Column names are matched loosely (case and punctuation ignored: 'top-1', 'top1' and 'Top1' are one column) because
timm's validate.py and validate/imagenet.py spell them differently; files without model and top-1 columns are skipped.
"""
import csv
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional

RESULTS_DIR = Path(__file__).resolve().parent.parent / 'validate' / 'results'

_COLUMNS = {'model': 'model', 'tag': 'tag', 'top1': 'top1', 'top5': 'top5', 'imgsize': 'img_size',
            'croppct': 'crop_pct', 'crop': 'crop_pct', 'paramcount': 'params', 'params': 'params',
            'gmacs': 'gmacs', 'dataset': 'dataset'}


def _key(column: str) -> Optional[str]:
    return _COLUMNS.get(re.sub(r'[^a-z0-9]', '', column.lower()))


def read_results(path: Path) -> List[Dict[str, str]]:
    """Rows as {model (with '.tag' when a tag column is present), top1, top5, img_size, crop_pct, ..., source}."""
    path = Path(path)
    with path.open(newline='') as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return []
        columns = {c: _key(c) for c in reader.fieldnames if _key(c)}
        if not {'model', 'top1'} <= set(columns.values()):
            return []
        rows = []
        for raw in reader:
            row = {name: (raw[c] or '').strip() for c, name in columns.items()}
            if row.get('tag') and '.' not in row['model']:
                row['model'] = f'{row["model"]}.{row["tag"]}'
            row['source'] = path.name
            rows.append(row)
        return rows


def all_results(results_dir: Path = RESULTS_DIR) -> List[Dict[str, str]]:
    return [row for p in sorted(Path(results_dir).glob('*.csv')) for row in read_results(p)]


def rows_for(rows: Iterable[Dict[str, str]], names: Iterable[str]) -> List[Dict[str, str]]:
    """Rows whose model is one of `names` (an arch, 'arch.tag', or a Hub id such as 'hf-hub:org/arch.tag')."""
    wanted = set(names)
    return [r for r in rows if r['model'] in wanted or r['model'].split(':', 1)[-1] in wanted
            or r['model'].rsplit('/', 1)[-1] in wanted]
