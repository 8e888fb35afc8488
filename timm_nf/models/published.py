"""Published weights are data: timm_nf/published_weights.json lists each tag, and registration reads it.

Each entry: {"tag": "arch.tag", "pretrained_cfg": {...PretrainedCfg fields...}, "metrics": {...}, "provenance": "..."}.
`python -m hub publish` appends to it; nothing else needs editing for a new tag to work with pretrained=True.
"""
import json
from pathlib import Path
from typing import Any, Dict, List

PUBLISHED_WEIGHTS_FILE = Path(__file__).resolve().parent.parent / 'published_weights.json'


def load_published(path: Path = PUBLISHED_WEIGHTS_FILE) -> List[Dict[str, Any]]:
    entries = json.loads(path.read_text())
    for entry in entries:
        arch, _, tag = entry['tag'].partition('.')
        if not tag:
            raise ValueError(f'{path}: published weights need an "arch.tag" name, got {entry["tag"]!r}')
    return entries


def published_cfgs(path: Path = PUBLISHED_WEIGHTS_FILE) -> Dict[str, Dict[str, Any]]:
    """'arch.tag' → pretrained cfg fields (lists turned into the tuples timm expects)."""
    return {
        entry['tag']: {k: tuple(v) if isinstance(v, list) else v for k, v in entry['pretrained_cfg'].items()}
        for entry in load_published(path)
    }
