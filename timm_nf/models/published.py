"""Published weights are data: timm_nf/published_weights.json lists each tag, and registration reads it.

Each entry: {"tag": "arch.tag", "pretrained_cfg": {...PretrainedCfg fields...}, "metrics": {...}, "provenance": "..."}.
`python -m hub publish` adds or replaces entries (atomically, through `upsert_published`); nothing else needs editing
for a new tag to work with `create_model('arch.tag', pretrained=True)`.
"""
import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from timm.models import PretrainedCfg

from .._atomic import write_text_atomic

PUBLISHED_WEIGHTS_FILE = Path(__file__).resolve().parent.parent / 'published_weights.json'

_CFG_FIELDS = frozenset(f.name for f in fields(PretrainedCfg))
_ENTRY_KEYS = {'tag', 'pretrained_cfg', 'metrics', 'provenance'}


def registry_path(path: Optional[Path] = None) -> Path:
    # resolved at call time, so tests can point the registry at a copy (monkeypatch PUBLISHED_WEIGHTS_FILE)
    return Path(path) if path is not None else PUBLISHED_WEIGHTS_FILE


def validate_entry(entry: Dict[str, Any], where: str = 'published weights') -> None:
    """ValueError saying what is wrong with one entry: its keys, its 'arch.tag' name, its cfg fields, its weights."""
    if not isinstance(entry, dict) or not {'tag', 'pretrained_cfg'} <= set(entry):
        raise ValueError(f'{where}: each entry needs "tag" and "pretrained_cfg", got {entry!r}')
    extra = sorted(set(entry) - _ENTRY_KEYS)
    if extra:
        raise ValueError(f'{where}: entry {entry["tag"]!r} has unknown keys {extra}; expected {sorted(_ENTRY_KEYS)}')
    arch, _, tag = str(entry['tag']).partition('.')
    if not arch or not tag:
        raise ValueError(f'{where}: published weights need an "arch.tag" name, got {entry["tag"]!r}')
    cfg = entry['pretrained_cfg']
    unknown = sorted(set(cfg) - _CFG_FIELDS)
    if unknown:
        raise ValueError(f'{where}: {entry["tag"]}: {unknown} are not PretrainedCfg fields')
    if not (cfg.get('hf_hub_id') or cfg.get('url') or cfg.get('file')):
        raise ValueError(f'{where}: {entry["tag"]} names no weights: give hf_hub_id, url or file')
    if not isinstance(entry.get('metrics', {}), dict):
        raise ValueError(f'{where}: {entry["tag"]}: "metrics" must be a mapping, got {entry["metrics"]!r}')


def load_published(path: Optional[Path] = None) -> List[Dict[str, Any]]:
    path = registry_path(path)
    entries = json.loads(path.read_text())
    if not isinstance(entries, list):
        raise ValueError(f'{path}: expected a JSON list of entries')
    seen = set()
    for entry in entries:
        validate_entry(entry, str(path))
        if entry['tag'] in seen:
            raise ValueError(f'{path}: tag {entry["tag"]!r} is listed twice')
        seen.add(entry['tag'])
    return entries


def published_cfgs(path: Optional[Path] = None) -> Dict[str, Dict[str, Any]]:
    """'arch.tag' → pretrained cfg fields (lists turned into the tuples timm expects)."""
    return {
        entry['tag']: {k: tuple(v) if isinstance(v, list) else v for k, v in entry['pretrained_cfg'].items()}
        for entry in load_published(path)
    }


def published_entry(tag: str, path: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """The entry of 'arch.tag' (metrics, provenance, cfg), or None."""
    return next((e for e in load_published(path) if e['tag'] == tag), None)


def registry_text(entries: List[Dict[str, Any]], path: Optional[Path] = None) -> str:
    """The file's text for `entries`, each validated first."""
    for entry in entries:
        validate_entry(entry, str(registry_path(path)))
    return json.dumps(entries, indent=2) + '\n'


def write_published(entries: List[Dict[str, Any]], path: Optional[Path] = None) -> None:
    """Validate, then replace the file atomically: readers see the old list or the new one, never half of it."""
    write_text_atomic(registry_path(path), registry_text(entries, path))


def upserted(entry: Dict[str, Any], path: Optional[Path] = None) -> Tuple[List[Dict[str, Any]], bool]:
    """The registry's entries with `entry` added, or replacing the entry with the same tag in place (keeping the
    order), and whether it replaced one; nothing is written."""
    validate_entry(entry)
    entries = load_published(path)
    index = next((i for i, e in enumerate(entries) if e['tag'] == entry['tag']), None)
    if index is None:
        entries.append(entry)
    else:
        entries[index] = entry
    return entries, index is not None


def upsert_published(entry: Dict[str, Any], path: Optional[Path] = None) -> bool:
    """Add `entry`, or replace the entry with the same tag in place (keeping the order). True if it replaced one."""
    entries, replaced = upserted(entry, path)
    write_published(entries, path)
    return replaced
