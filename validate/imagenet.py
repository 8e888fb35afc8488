"""Validate registered pretrained tags on ImageNet with timm's own validate.py, at their train and test sizes.

    python -m validate imagenet --data-dir /imagenet --models 'nf_*' [--timm-dir /path/to/pytorch-image-models]
                                [--weights-dir DIR] [--device cuda] [--batch-size 256] [--workers 8] [--amp]
                                [--out validate/results/imagenet.csv] [-- EXTRA validate.py ARGS]

For every tag of our registered models that matches PATTERN (fnmatch, on 'arch' or 'arch.tag') it runs
`python -m timm_nf.run validate.py --model arch.tag ...` once at the train size (`--use-train-size`) and once at the
test size, each in its own process, and writes one CSV in timm's results format (results-imagenet.csv columns, plus
tag, size, GMACs, and the published reference top-1 with our difference to it where timm_nf/published_weights.json
has one). validate.py comes from a timm checkout: --timm-dir or $TIMM_SCRIPTS_DIR.
Weights: validate.py downloads the tag's pretrained weights; with --weights-dir, DIR/<arch.tag>.{safetensors,pth,
pth.tar,bin} is passed as --checkpoint instead (offline machines, or checking a training run's output).
"""
import argparse
import csv
import fnmatch
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import timm
import torch
from timm.models import get_pretrained_cfg

from hub.describe import sizes as data_sizes
from hub.flops import params_and_macs
from timm_nf._atomic import atomic_path
from timm_nf._command_line import UsageError, batch_size, check_output_file, command_main, whole_number
from timm_nf.models import MODEL_CONFIGS
from timm_nf.models.published import load_published
from timm_nf.run import SCRIPTS_DIR_ENV

RESULTS_FILE = Path(__file__).resolve().parent / 'results' / 'imagenet.csv'
COLUMNS = ['model', 'tag', 'size', 'img_size', 'crop_pct', 'interpolation', 'top1', 'top1_err', 'top5', 'top5_err',
           'param_count', 'gmacs', 'ref_top1', 'top1_diff', 'error']
SPLIT_SYNONYMS = ('validation', 'val', 'valid', 'eval', 'evaluation')
WEIGHT_SUFFIXES = ('.safetensors', '.pth', '.pth.tar', '.bin')


class HarnessError(UsageError):
    """Bad input to the harness: the message says what was expected."""


def matching_tags(pattern: str) -> List[str]:
    """Our registered 'arch.tag' names with weights whose arch or full name matches `pattern`."""
    ours = [t for t in timm.list_models(pretrained=True) if t.split('.')[0] in MODEL_CONFIGS]
    tags = [t for t in ours if fnmatch.fnmatch(t, pattern) or fnmatch.fnmatch(t.split('.')[0], pattern)]
    if not tags:
        raise HarnessError(f'no registered pretrained tag matches {pattern!r}; the tags are: {", ".join(ours)}')
    return tags


def find_validate_script(timm_dir: Optional[str]) -> Path:
    where = timm_dir or os.environ.get(SCRIPTS_DIR_ENV)
    if not where:
        raise HarnessError(f"timm's validate.py is needed: pass --timm-dir /path/to/pytorch-image-models (a checkout "
                           f"of github.com/huggingface/pytorch-image-models) or set ${SCRIPTS_DIR_ENV}")
    script = Path(where) / 'validate.py'
    if not script.is_file():
        raise HarnessError(f'{script} not found: --timm-dir / ${SCRIPTS_DIR_ENV} must be a timm repository checkout')
    return script


def check_data_dir(data_dir: Path, split: str) -> Path:
    """The split folder; validate.py would silently fall back to the root (the training images) without one."""
    if not data_dir.is_dir():
        raise HarnessError(f'--data-dir {data_dir} is not a folder: expected ImageNet\'s layout, '
                           f'DIR/validation/<synset>/<image>.JPEG')
    names = (split,) + tuple(s for s in SPLIT_SYNONYMS if s != split) if split in SPLIT_SYNONYMS else (split,)
    for name in names:
        if (data_dir / name).is_dir():
            classes = [p for p in (data_dir / name).iterdir() if p.is_dir()]
            if not classes:
                raise HarnessError(f'{data_dir / name} has no class folders: expected <synset>/<image>.JPEG inside')
            if len(classes) != 1000:
                print(f'note: {data_dir / name} has {len(classes)} class folders, not ImageNet\'s 1000; labels are '
                      f'the folders\' indices in sorted order', file=sys.stderr)
            return data_dir / name
    raise HarnessError(f'{data_dir} has no {" / ".join(names)} folder: expected DIR/{split}/<synset>/<image>.JPEG')


def find_weights(weights_dir: Optional[Path], tag: str) -> Optional[Path]:
    if weights_dir is None:
        return None
    for suffix in WEIGHT_SUFFIXES:
        if (weights_dir / f'{tag}{suffix}').is_file():
            return weights_dir / f'{tag}{suffix}'
    raise HarnessError(f'--weights-dir {weights_dir} has no weights for {tag}: expected {tag}' + '|'.join(
        WEIGHT_SUFFIXES))


def eval_sizes(tag: str) -> Dict[str, int]:
    """{'train': px, 'test': px} from the tag's pretrained cfg; one entry when both are the same."""
    both = data_sizes(get_pretrained_cfg(tag).to_dict())
    return {'train': both['train']} if both['test'] == both['train'] else both


def gmacs(arch: str, img_size: int) -> float:
    """Multiply-accumulates (G) of one forward pass: the model card's counter (hub/flops.py)."""
    return round(params_and_macs(arch, [img_size])[1][img_size] / 1e9, 3)


def reference_top1() -> Dict[str, Dict[int, float]]:
    """'arch.tag' → {img_size: published top-1} from timm_nf/published_weights.json."""
    refs = {}
    for entry in load_published():
        top1 = entry.get('metrics', {}).get('imagenet_top1', {})
        refs[entry['tag']] = {int(size): float(value) for size, value in top1.items()}
    return refs


def validate_command(script: Path, tag: str, size: str, data_dir: Path, split: str, results_file: Path,
                     checkpoint: Optional[Path], device: str, batch_size: int, workers: int, amp: bool,
                     extra: Sequence[str]) -> List[str]:
    cmd = [sys.executable, '-m', 'timm_nf.run', str(script), '--data-dir', str(data_dir), '--split', split,
           '--model', tag, '--device', device, '--batch-size', str(batch_size), '--workers', str(max(1, workers)),
           '--results-file', str(results_file), '--results-format', 'json']
    if size == 'train':
        cmd.append('--use-train-size')
    if checkpoint is not None:
        cmd += ['--checkpoint', str(checkpoint)]
    if amp:
        cmd.append('--amp')
    return cmd + list(extra)


def result_row(tag: str, size: str, result: Dict, refs: Dict[str, Dict[int, float]]) -> Dict:
    img_size = int(result['img_size'])
    ref = refs.get(tag, {}).get(img_size)
    return dict(model=tag, tag=tag.partition('.')[2], size=size, img_size=img_size, crop_pct=result['crop_pct'],
                interpolation=result['interpolation'], top1=result['top1'], top1_err=result['top1_err'],
                top5=result['top5'], top5_err=result['top5_err'], param_count=result['param_count'],
                gmacs=gmacs(tag.split('.')[0], img_size), ref_top1='' if ref is None else ref,
                top1_diff='' if ref is None else round(result['top1'] - ref, 3), error='')


def write_csv(rows: List[Dict], out: Path) -> None:
    """Written to a temporary file first, so a failed run never leaves half a table behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(str(out)) as tmp, open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def run(args) -> List[Dict]:
    check_output_file(str(args.out), '--out', suffixes=('.csv',))
    if args.weights_dir is not None and not args.weights_dir.is_dir():
        raise HarnessError(f'--weights-dir {args.weights_dir} is not a folder: expected DIR/<arch.tag>.safetensors')
    if not args.split or '/' in args.split:
        raise HarnessError(f'--split {args.split!r}: expected the name of a folder inside --data-dir, e.g. validation')
    script = find_validate_script(args.timm_dir)
    check_data_dir(args.data_dir, args.split)
    tags = matching_tags(args.models)
    checkpoints = {tag: find_weights(args.weights_dir, tag) for tag in tags}
    refs = reference_top1()
    rows = []
    with tempfile.TemporaryDirectory(prefix='timm_nf_imagenet_') as tmp:
        for tag in tags:
            for size, px in eval_sizes(tag).items():
                results_file = Path(tmp) / f'{tag}_{size}.json'
                cmd = validate_command(script, tag, size, args.data_dir, args.split, results_file, checkpoints[tag],
                                       args.device, args.batch_size, args.workers, args.amp, args.extra)
                print(f'[{tag} @ {px} px, {size} size] ' + ' '.join(cmd[1:]), flush=True)
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0 or not results_file.is_file():
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']
                    rows.append(dict(model=tag, tag=tag.partition('.')[2], size=size, img_size=px,
                                     error=f'validate.py exit {proc.returncode}: {tail[0]}'))
                    print(f'  failed: {rows[-1]["error"]}', file=sys.stderr)
                    continue
                rows.append(result_row(tag, size, json.loads(results_file.read_text()), refs))
                r = rows[-1]
                print(f"  top-1 {r['top1']:.3f}  top-5 {r['top5']:.3f}  crop {r['crop_pct']}  {r['gmacs']} GMACs"
                      + (f"  (published {r['ref_top1']}, diff {r['top1_diff']:+.3f})" if r['ref_top1'] != '' else ''))
    write_csv(rows, args.out)
    print(f'wrote {args.out} ({len(rows)} rows)')
    return rows


def _device(text: str) -> str:
    """An argparse type: a device torch knows by name ('cuda', 'cuda:1', 'cpu', ...)."""
    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected a torch device such as 'cuda', 'cuda:1' or 'cpu', got {text!r}") \
            from None
    return text


PROG = 'python -m validate imagenet'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--data-dir', type=Path, required=True, help='ImageNet root: DIR/validation/<synset>/*.JPEG')
    parser.add_argument('--models', required=True, help="fnmatch pattern over registered pretrained tags, e.g. 'nf_*'")
    parser.add_argument('--timm-dir', default=None, help=f'timm repository checkout (default: ${SCRIPTS_DIR_ENV})')
    parser.add_argument('--weights-dir', type=Path, default=None, help='DIR/<arch.tag>.safetensors etc. as checkpoints')
    parser.add_argument('--split', default='validation')
    parser.add_argument('--device', type=_device, default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('-b', '--batch-size', type=batch_size, default=256)
    parser.add_argument('-j', '--workers', type=whole_number(0, 1024), default=8)
    parser.add_argument('--amp', action='store_true')
    parser.add_argument('--out', type=Path, default=RESULTS_FILE)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index('--') + 1:] if '--' in argv else []

    def run_all(args) -> int:
        args.extra = extra
        rows = run(args)  # HarnessError and unwritable output paths are UsageErrors: one line, exit 2
        return 1 if any(r.get('error') for r in rows) else 0

    return command_main(PROG, __doc__.split('\n')[0], add_arguments, run_all,
                        argv[:argv.index('--')] if '--' in argv else argv)


if __name__ == '__main__':
    sys.exit(main())
