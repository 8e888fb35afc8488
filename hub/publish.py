"""`python -m hub publish`: a train.py checkpoint → a Hub repo folder (model.safetensors, config.json, README.md).

Order matters: names, options, the output folder, the registry and the token are checked, the checkpoint is read and
matched, and only then is anything written; the folder is built in a temporary sibling directory and renamed into
place, so it is never half-written. An existing folder is replaced only with --overwrite, only if it holds exactly
the files this command wrote there (its marker file lists them) and none of the command's inputs. The registry's new
text is written to a temporary file before the folder is moved or uploaded, and renamed into place after.
"""
import argparse
import contextlib
import csv
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

from huggingface_hub.utils import HFValidationError, validate_repo_id
from timm.models import save_for_hf

from timm_nf._atomic import atomic_path
from timm_nf._command_line import (UsageError, check_output_file, check_output_folder, command_main, description,
                                   fraction, image_size, write_folder_marker)
from timm_nf.checkpoint import TrainCheckpoint, build_model, checkpoint_file, read_checkpoint
from timm_nf.models.published import load_published, registry_path, registry_text, upserted

from .card import hub_readme
from .describe import sizes as data_sizes
from .flops import params_and_macs
from .names import RepoName, parse_repo_id
from .results import read_results, rows_for
from .upload import check_token, upload

PROG = 'python -m hub publish'
MIN_IMG_SIZE = 32  # every timm-nf net downsamples 32x
MARKER = '.timm-nf-publish.json'  # in an --out folder: the files this command wrote there, so --overwrite may replace them

FIGURES_DIR = Path(__file__).resolve().parent.parent / 'docs' / 'figures'
# the repository's SPP figures (written by `python -m validate spp`) by the family and kind of NF net they show: the
# paper-exact NF-ResNet-600, and timm's NF-ResNet-50 beside ours; a card shows its own family's figure or none
FAMILY_FIGURES = {('dm_', 'resnet'): 'spp_nf_resnet600.png', ('nf_', 'resnet'): 'spp_resnet50_flavours.png'}
# create_model kwargs a registered tag can carry through its pretrained cfg; anything else changes the architecture
_TAG_SAFE_ARGS = {'num_classes', 'in_chans', 'global_pool'}
_TRAIN_DATA_ARGS = ('img_size', 'input_size', 'crop_pct', 'mean', 'std', 'interpolation')
_REGISTRY_CFG_KEYS = ('input_size', 'test_input_size', 'crop_pct', 'test_crop_pct', 'crop_mode', 'interpolation',
                      'mean', 'std', 'num_classes', 'pool_size', 'license')


class PublishError(UsageError):
    """Options that cannot be published together; the message says what to change."""


def _data_config(checkpoint: TrainCheckpoint, test_img_size: Optional[int], test_crop_pct: Optional[float]):
    """The preprocessing train.py used (only what its args set; the rest comes from the registered cfg)."""
    args = checkpoint.train_args
    config = {k: args[k] for k in _TRAIN_DATA_ARGS if args.get(k) not in (None, '')}
    if test_img_size:
        config['test_input_size'] = (checkpoint.model_args.get('in_chans', 3), test_img_size, test_img_size)
    if test_crop_pct:
        config['test_crop_pct'] = test_crop_pct
    return config


def _dataset(checkpoint: TrainCheckpoint, num_classes: int, given: Optional[str]) -> Optional[str]:
    if given:
        return given
    recorded = str(checkpoint.train_args.get('dataset') or '')
    if '/' in recorded:  # train.py's 'torch/cifar10', 'hfds/org/name' → the dataset's own name
        return recorded.split('/', 1)[1]
    return 'imagenet-1k' if num_classes == 1000 else None


def _spp_figure(arch: str, figures_dir: Path) -> Optional[Path]:
    """The SPP figure of `arch` (spp_ARCH.png), else its family's figure of its kind (FAMILY_FIGURES): a timm-family
    card never shows the paper-exact net's figure, nor a RegNet card a ResNet's. None when there is none."""
    family = 'dm_' if arch.startswith('dm_') else 'nf_'
    kind = 'regnet' if 'regnet' in arch else 'resnet'
    for name in (f'spp_{arch}.png', FAMILY_FIGURES.get((family, kind))):
        if name and (figures_dir / name).is_file():
            return figures_dir / name
    return None


def _metrics(rows: List[Dict[str, str]], dataset: Optional[str]) -> Dict[str, Dict[str, float]]:
    prefix = 'imagenet' if (dataset or '').startswith('imagenet') else (dataset or 'eval').replace('-', '_')
    metrics: Dict[str, Dict[str, float]] = {}
    for row in rows:
        for metric in ('top1', 'top5'):
            if row.get(metric):
                metrics.setdefault(f'{prefix}_{metric}', {})[row.get('img_size') or 'eval'] = float(row[metric])
    return metrics


def registry_entry(repo: RepoName, config: Dict[str, Any], metrics: Dict[str, Any], provenance: str):
    pcfg = config['pretrained_cfg']
    # every key written, None included, so that no value of the registered default cfg survives by accident
    cfg = {'hf_hub_id': repo.repo_id, **{k: pcfg.get(k) for k in _REGISTRY_CFG_KEYS}}
    return {'tag': repo.model_tag, 'pretrained_cfg': cfg, 'metrics': metrics, 'provenance': provenance}


def _results(opts, repo: RepoName) -> List[Dict[str, str]]:
    """The --results rows for this model, read and checked before anything is built."""
    if not opts.results:
        return []
    try:
        rows = rows_for(read_results(Path(opts.results)), [repo.arch, repo.model_tag, repo.repo_id])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PublishError(f'--results {opts.results} is not a readable CSV: {e}') from None
    for row in rows:
        for metric in ('top1', 'top5'):
            try:
                float(row.get(metric) or 0)
            except ValueError:
                raise PublishError(f'--results {opts.results}: {metric} of {row["model"]} is {row[metric]!r}, '
                                   f'expected a number') from None
    return rows


def _build(folder: Path, repo: RepoName, checkpoint: TrainCheckpoint, results: List[Dict[str, str]],
           opts) -> Dict[str, Any]:
    model = build_model(checkpoint)
    save_for_hf(model, folder, safe_serialization=True,
                data_config=_data_config(checkpoint, opts.test_img_size, opts.test_crop_pct))
    config = json.loads((folder / 'config.json').read_text())
    size = data_sizes(config['pretrained_cfg'])
    params, macs = params_and_macs(repo.arch, set(size.values()), **checkpoint.model_args)
    figure = _spp_figure(repo.arch, Path(opts.figures_dir))
    if figure is not None:
        shutil.copy2(figure, folder / figure.name)
    dataset = _dataset(checkpoint, config['num_classes'], opts.dataset)
    readme = hub_readme(repo, checkpoint, config, params, {k: macs[v] for k, v in size.items()}, size, results,
                        dataset, figure.name if figure is not None else None)
    (folder / 'README.md').write_text(readme, encoding='utf-8')
    return dict(config=config, results=results, dataset=dataset)


def _readable(folder: Path) -> None:
    # mkdtemp and safetensors create private files; a published folder is for everyone, like any new file
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for file in folder.iterdir():
        file.chmod(0o666 & ~umask)


def _move_into_place(built: Path, out: Path) -> None:
    if not out.exists():
        built.rename(out)
        return
    old = out.with_name(f'.{out.name}.old-{uuid.uuid4().hex[:8]}')  # a fresh name: a stale one cannot block it
    out.rename(old)  # two renames: `out` is missing for an instant, never half-written
    try:
        built.rename(out)
    except OSError:
        old.rename(out)  # the previous folder comes back
        raise
    shutil.rmtree(old)


def _registry_update(repo: RepoName, checkpoint: TrainCheckpoint, built: Dict[str, Any], opts):
    """(the registry's new text, whether it replaces an entry of the same tag)."""
    provenance = opts.provenance or (
        f"trained with timm's train.py; published by `python -m hub publish` from {checkpoint.path.name} "
        f'({checkpoint.weights}' + (f', epoch {checkpoint.epoch})' if checkpoint.epoch is not None else ')'))
    entry = registry_entry(repo, built['config'], _metrics(built['results'], built['dataset']), provenance)
    entries, replaced = upserted(entry, registry_path(opts.registry))
    return registry_text(entries, registry_path(opts.registry)), replaced


def _check_options(opts, checkpoint: Path, register: bool) -> None:
    if opts.test_img_size is not None and opts.test_img_size < MIN_IMG_SIZE:
        raise PublishError(f'--test-img-size {opts.test_img_size} is too small: expected {MIN_IMG_SIZE} px or more '
                           f'(the nets downsample {MIN_IMG_SIZE}x)')
    if opts.dataset is not None:
        try:
            validate_repo_id(opts.dataset)
        except HFValidationError:
            raise PublishError(f'--dataset {opts.dataset!r}: expected a Hub dataset id such as imagenet-1k or '
                               f'ORG/NAME') from None
    if opts.provenance is not None and (not opts.provenance.strip() or len(opts.provenance) > 300
                                        or any(c in opts.provenance for c in '\n\r|')):
        raise PublishError('--provenance must be one line of 1 to 300 characters without "|" (it is a cell of the '
                           'model card\'s weights table)')
    if not Path(opts.figures_dir).is_dir():
        raise PublishError(f'--figures-dir {opts.figures_dir} is not a folder: expected the spp_*.png figures '
                           f'(docs/figures)')
    if opts.results and not Path(opts.results).is_file():
        raise PublishError(f'--results {opts.results} not found: expected a CSV written by `python -m validate`')
    registry = registry_path(opts.registry)
    if opts.out:
        inputs = [(opts.checkpoint, 'the checkpoint'), (str(checkpoint), 'the checkpoint file'),
                  (opts.results, 'the --results file'), (opts.figures_dir, 'the --figures-dir folder'),
                  (str(registry) if register else None, 'the --registry file')]
        check_output_folder(opts.out, '--out', replace=opts.overwrite, marker=MARKER, inputs=inputs)
    if register:  # a registry that cannot be read, parsed or written fails before anything is built
        check_output_file(str(registry), '--registry', suffixes=('.json',))
        try:
            load_published(registry)
        except (OSError, ValueError) as e:
            raise PublishError(f'the published weights registry cannot be updated: {e}') from None


def publish(opts) -> Path:
    """Build (and upload / register) the repo folder; returns the folder path (a temporary one is removed)."""
    repo = parse_repo_id(opts.repo_id, arch=opts.model)
    out = Path(os.path.realpath(opts.out)) if opts.out else None  # a link or `.` is replaced where it points
    register = opts.register if opts.register is not None else out is None
    _check_options(opts, checkpoint_file(opts.checkpoint), register)
    if out is None:
        check_token(repo)
    checkpoint = read_checkpoint(opts.checkpoint, use_ema=not opts.no_ema, arch=repo.arch)
    arch_args = sorted(set(checkpoint.model_args) - _TAG_SAFE_ARGS)
    if register and arch_args:
        raise PublishError(f'weights built with architecture overrides {arch_args} cannot be a registered tag of '
                           f'{repo.arch} (a tag carries no model args): publish with --no-register and load them '
                           f"with create_model('hf-hub:{repo.repo_id}')")
    results = _results(opts, repo)
    parent = out.absolute().parent if out is not None else Path(tempfile.gettempdir())
    building = Path(tempfile.mkdtemp(prefix=f'.{repo.model_tag}.', dir=parent))
    try:
        built = _build(building, repo, checkpoint, results, opts)
        with contextlib.ExitStack() as stack:
            if register:  # written in full before anything is moved or uploaded, renamed into place after
                text, replaced = _registry_update(repo, checkpoint, built, opts)
                staged = stack.enter_context(atomic_path(str(registry_path(opts.registry))))
                Path(staged).write_text(text, encoding='utf-8')
            if out is not None:
                _readable(building)
                write_folder_marker(str(building), MARKER, PROG)
                # again: a file put into --out while the folder was being built is not ours to delete
                check_output_folder(str(out), '--out', replace=opts.overwrite, marker=MARKER)
                _move_into_place(building, out)
            else:
                commit = upload(building, repo, private=opts.private)
                print(f'uploaded {repo.repo_id}: {commit.commit_url}')
    finally:
        if building.exists():
            shutil.rmtree(building)
    if register:
        print(f'{"updated" if replaced else "registered"} {repo.model_tag} in the published weights registry')
    return out if out is not None else Path(repo.repo_id)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('checkpoint', help='train.py checkpoint (model_best.pth.tar), its output folder, or a '
                                           '.safetensors state dict')
    parser.add_argument('--repo-id', required=True, help='ORG/ARCH.TAG, e.g. myorg/dm_nf_regnet_b1.my_in1k')
    parser.add_argument('--model', help='architecture, checked against the repo name (which names it anyway)')
    parser.add_argument('--out', help='write the repo folder here and do not upload')
    parser.add_argument('--overwrite', action='store_true',
                        help=f'replace an existing --out folder: only one holding exactly what this command wrote '
                             f'there ({MARKER} lists it)')
    parser.add_argument('--no-ema', action='store_true', help="publish the raw weights, not train.py's EMA ones")
    parser.add_argument('--results', help='a validate/ results CSV; rows for this model go into the card')
    parser.add_argument('--dataset', help='Hub dataset id for the card (default: from the checkpoint args)')
    parser.add_argument('--test-img-size', type=image_size,
                        help=f'recommended test image size for the config ({MIN_IMG_SIZE} px or more)')
    parser.add_argument('--test-crop-pct', type=fraction, help='recommended test crop for the config, in (0, 1]')
    parser.add_argument('--figures-dir', default=str(FIGURES_DIR), help='where the spp_*.png figures are')
    parser.add_argument('--register', dest='register', action='store_true', default=None,
                        help='add the tag to timm_nf/published_weights.json (default: only after an upload)')
    parser.add_argument('--no-register', dest='register', action='store_false')
    parser.add_argument('--registry', help='the published weights file to update (default: timm_nf\'s own)')
    parser.add_argument('--provenance', help='provenance line for the registry entry')
    parser.add_argument('--private', action='store_true', help='create the Hub repo private')


def run(opts) -> int:
    folder = publish(opts)
    print(f'published {folder}')
    return 0


def main(argv=None) -> int:
    return command_main(PROG, description(__doc__), add_arguments, run, argv)
