"""`python -m hub verify SOURCE --checkpoint CKPT`: load published weights exactly as a user would and compare them
with the training checkpoint: architecture, every tensor's checksum, logits on a fixed input.

SOURCE is what a user passes to timm.create_model: 'hf-hub:ORG/ARCH.TAG', 'local-dir:/path' (a plain folder path
is taken as local-dir), or a registered 'ARCH.TAG'. Exit status 1 when a check fails (corrupt published weights
included), 2 for bad input (a missing folder, an unknown tag, an unreadable checkpoint, no network).
"""
import argparse
import hashlib
import json
from pathlib import Path
from typing import List, Optional, Tuple

import torch
import timm
from safetensors import SafetensorError

from timm_nf._arguments import first_line
from timm_nf._command_line import UsageError, command_main, description, image_size, non_negative_float
from timm_nf._download import hub_or_cache, network_errors
from timm_nf._memory import check_fits, inference_bytes
from timm_nf.checkpoint import (CheckpointError, build_model, checkpoint_file, read_checkpoint, read_safetensors,
                                state_dict_mismatch)
from timm_nf.models.variants import MODEL_CONFIGS

PROG = 'python -m hub verify'


class VerifyError(RuntimeError):
    """The published weights are there but broken: a failed check, not bad input."""


def tensor_checksum(tensor: torch.Tensor) -> str:
    raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    return hashlib.sha256(raw.numpy().tobytes()).hexdigest()


def fixed_input(channels: int, size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))


def _source(source: str) -> str:
    """SOURCE as timm takes it; UsageError for a folder that is not there or a name timm does not know."""
    if source.startswith(('hf-hub:', 'local-dir:')):
        return source
    if Path(source).is_dir():
        return f'local-dir:{Path(source).resolve()}'
    arch, dot, _ = source.partition('.')
    if not dot or '/' in source or not timm.is_model(arch):
        raise UsageError(f'{source!r} is neither a folder nor a registered ARCH.TAG: expected a folder written by '
                         f"`python -m hub publish`, 'local-dir:PATH', 'hf-hub:ORG/ARCH.TAG' or e.g. "
                         f"'dm_nf_regnet_b1.my_in1k'")
    return source


def check_config(path: Path, source: str) -> None:
    """UsageError unless `path` is the config.json of one of our nets as `python -m hub publish` writes it (timm
    would fail on it with a JSON, key or type error, or load some other model)."""
    try:
        config = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f'the config.json of {source} is not readable JSON ({first_line(e)}): expected the config '
                         f'written by `python -m hub publish`') from None
    arch = config.get('architecture') if isinstance(config, dict) else None
    if not isinstance(arch, str) or arch not in MODEL_CONFIGS:
        found = f'architecture {arch!r}' if isinstance(config, dict) else f'a JSON {type(config).__name__}'
        raise UsageError(f'the config.json of {source} names {found}: expected a timm-nf model '
                         f'({", ".join(sorted(MODEL_CONFIGS)[:3])}, ...), as `python -m hub publish` writes')
    for key, kind, expected in (('num_classes', int, 'a whole number'), ('model_args', dict, 'a mapping'),
                                ('pretrained_cfg', dict, 'a mapping')):
        value = config.get(key)
        if key in config and (not isinstance(value, kind) or isinstance(value, bool)):
            raise UsageError(f'the config.json of {source} has {key} {value!r}: expected {expected}')


def _hub_config(source: str) -> Path:
    """The config.json of an hf-hub: source, downloaded (or from the cache) to be checked before timm reads it."""
    from huggingface_hub import hf_hub_download
    repo_id, _, revision = source.split(':', 1)[1].partition('@')
    return Path(hf_hub_download(repo_id, 'config.json', revision=revision or None))


def load_published(source: str) -> torch.nn.Module:
    """timm.create_model(source, pretrained=True), with a clear error for unreadable configs and weight files."""
    if source.startswith('local-dir:'):
        folder = Path(source.split(':', 1)[1])
        if not folder.is_dir():
            raise UsageError(f'folder {folder} not found: expected a folder written by `python -m hub publish`')
        if not (folder / 'config.json').is_file():
            raise UsageError(f'{folder} has no config.json: expected a folder written by `python -m hub publish`')
        check_config(folder / 'config.json', source)
        if (folder / 'model.safetensors').is_file():
            try:  # a truncated file is named here, not deep in timm
                read_safetensors(folder / 'model.safetensors')
            except CheckpointError as e:
                raise VerifyError(f'the published {e}') from None
    with hub_or_cache() as offline:
        try:
            if source.startswith('hf-hub:'):
                check_config(_hub_config(source), source)
            return timm.create_model(source, pretrained=True).eval()
        except SafetensorError as e:
            raise VerifyError(f'the published model.safetensors of {source} is truncated or corrupt: {e}') from None
        except RuntimeError as e:  # timm: "Invalid pretrained tag (x) for arch", "Unknown model (x)"
            raise UsageError(f'{source}: {e}') from None
        except network_errors() as e:  # no network, offline mode, not in the local cache
            why = f'{offline}, and it is not in the local cache' if offline else first_line(e)
            raise UsageError(f'cannot download {source}: {why}') from None


def compare(published: torch.nn.Module, reference: torch.nn.Module, img_size: int, atol: float
            ) -> List[Tuple[bool, str, str]]:
    """[(passed, check, detail)] for architecture, tensors and logits."""
    checks = []
    got_cfg, want_cfg = getattr(published, 'cfg', None), getattr(reference, 'cfg', None)
    same_arch = (type(published) is type(reference) and got_cfg == want_cfg
                 and published.num_classes == reference.num_classes)
    checks.append((same_arch, 'architecture',
                   f'{type(published).__name__}, {published.num_classes} classes' if same_arch else
                   f'published {got_cfg} / {published.num_classes} classes vs checkpoint {want_cfg} / '
                   f'{reference.num_classes} classes'))
    got, want = published.state_dict(), reference.state_dict()
    problems = state_dict_mismatch(want, got)
    differ = [k for k in want if k in got and got[k].shape == want[k].shape and
              (got[k].dtype != want[k].dtype or tensor_checksum(got[k]) != tensor_checksum(want[k]))]
    ok = not problems and not differ
    detail = f'{len(want)} tensors, sha256 identical' if ok else '; '.join(
        problems + ([f'{len(differ)} tensors differ, e.g. {differ[:5]}'] if differ else []))
    checks.append((ok, 'tensor checksums', detail))
    if same_arch:
        x = fixed_input(published.pretrained_cfg['input_size'][0], img_size)
        with torch.no_grad():
            diff = (published(x) - reference(x)).abs().max().item()
        checks.append((diff <= atol, 'logits', f'max |Δ| = {diff:.3g} on a fixed {tuple(x.shape)} input '
                                               f'(tolerance {atol:g})'))
    return checks


def verify(source: str, checkpoint_path: str, use_ema: bool = True, img_size: Optional[int] = None, atol: float = 1e-5
           ) -> List[Tuple[bool, str, str]]:
    source = _source(source)
    checkpoint_file(checkpoint_path)  # a missing or unreadable checkpoint fails before any download
    published = load_published(source)
    checkpoint = read_checkpoint(checkpoint_path, use_ema=use_ema, arch=published.pretrained_cfg.get('architecture'))
    reference = build_model(checkpoint)
    size = img_size or published.pretrained_cfg['input_size'][-1]
    shape = (2, published.pretrained_cfg['input_size'][0], size, size)
    check_fits(2 * inference_bytes(published, shape), f'comparing logits at --img-size {size}',
               'lower --img-size')
    return compare(published, reference, size, atol)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('source', help="'hf-hub:ORG/ARCH.TAG', 'local-dir:PATH' / a folder, or 'ARCH.TAG'")
    parser.add_argument('--checkpoint', required=True, help='the train.py checkpoint the weights came from')
    parser.add_argument('--no-ema', action='store_true', help='compare with the raw weights, not the EMA ones')
    parser.add_argument('--img-size', type=image_size, default=None,
                        help='input size for the logits (default: the config)')
    parser.add_argument('--atol', type=non_negative_float, default=1e-5, help='largest allowed logit difference')


def run(opts) -> int:
    try:
        checks = verify(opts.source, opts.checkpoint, not opts.no_ema, opts.img_size, opts.atol)
    except VerifyError as e:
        print(f'FAIL  {opts.source}: {e}')
        return 1
    print(f'verify {opts.source} against {opts.checkpoint}')
    for passed, name, detail in checks:
        print(f'{"PASS" if passed else "FAIL"}  {name}: {detail}')
    return 0 if all(passed for passed, _, _ in checks) else 1


def main(argv=None) -> int:
    return command_main(PROG, description(__doc__), add_arguments, run, argv)
