"""Every command, every option, hostile values: one line on stderr naming what is wrong, exit status 2, no traceback,
no work started and nothing written.

The cases are data. COMMANDS lists each command (how to call it, arguments that make a valid call, and the function
that does its work, which bad input must never reach). Options whose argparse type is bounded (timm_nf/_command_line's
whole_number / real_number) get their cases generated from the bounds: below, above, NaN, a fraction or infinity.
HOSTILE holds the cases for everything else: names, paths, files, choices, sizes that exceed memory. A test fails
when an option of any command has neither, so a new command or option needs rows here (add its entry to COMMANDS
and its rows to HOSTILE).
"""
import argparse
import importlib
import math
import os
import shutil
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from helpers import one_error_line
from timm_nf._command_line import ArgumentParser

ROOT = Path(__file__).resolve().parent.parent
ARCH = 'dm_nf_regnet_b0'
REPO_OUTPUTS = ('MODEL_CARD.md', 'timm_nf/published_weights.json', 'validate/results', 'docs/figures', 'validate/recipes')

# command → (module whose parser it is, its dispatcher and name there, valid arguments, the function doing the work)
COMMANDS = {
    'timm-nf list': ('timm_nf.listing', 'timm_nf.cli', 'list', [], None),
    'timm-nf spp': ('timm_nf.spp.cli', 'timm_nf.cli', 'spp', [ARCH, '-o', 'out.png'], 'timm_nf.spp.cli._measure'),
    'timm-nf fuse': ('timm_nf.fusion_cli', 'timm_nf.cli', 'fuse', ['nf_resnet26', '-o', 'out.safetensors'],
                     'timm_nf.fusion_cli._build'),
    'timm-nf run': ('timm_nf.run', 'timm_nf.cli', 'run', ['script.py'], 'timm_nf.run.run_script'),
    'python -m hub publish': ('hub.publish', 'hub.__main__', 'publish',
                              ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub'], 'hub.publish._build'),
    'python -m hub verify': ('hub.verify', 'hub.__main__', 'verify', ['cfg_ok', '--checkpoint', 'ckpt.pth.tar'],
                             'hub.verify.compare'),
    'python -m hub card': ('hub.model_card', 'hub.__main__', 'card', ['--out', 'card.md'], 'hub.model_card.render'),
    'python -m validate imagenet': ('validate.imagenet', 'validate.__main__', 'imagenet',
                                    ['--data-dir', 'data', '--models', 'nf_*', '--timm-dir', 'timm_dir'],
                                    'validate.imagenet.validate_command'),
    'python -m validate spp': ('validate.spp_findings', 'validate.__main__', 'spp', [],
                               'validate.spp_findings._measure'),
    'python -m validate digits': ('validate.digits', 'validate.__main__', 'digits', ['--out-dir', 'digits_out'],
                                  'validate.digits.run'),
    'python -m validate batch-size': ('validate.batch_size', 'validate.__main__', 'batch-size', ['--out-dir', '.'],
                                      'validate.batch_size.run'),
    'python -m validate benchmark': ('validate.benchmark', 'validate.__main__', 'benchmark',
                                     ['--models', 'nf_resnet50', '--rows', 'eager', '--out', 'bench.json'],
                                     'validate.benchmark._build_rows'),
    'python -m validate private': ('validate.private', 'validate.__main__', 'private', ['--out-dir', '.'],
                                   'validate.private.run'),
    'python -m validate dp-benchmark': ('validate.dp_benchmark', 'validate.__main__', 'dp-benchmark',
                                        ['--models', 'nf_resnet26', '--modes', 'hooks', '--out', 'dp.json'],
                                        'validate.dp_benchmark._steps'),
    'python -m validate.make_recipes': ('validate.make_recipes', None, None, ['--out-dir', 'recipes'],
                                        'validate.make_recipes.write_text_atomic'),
}

GiB = 2 ** 30
# (command, option or positional argument exercised, argv, what the error line must say, available memory or None)
HOSTILE = [
    ('timm-nf list', 'pattern', ['zzz*'], "no timm-nf model matches 'zzz*'", None),
    ('timm-nf list', '--forward', ['--forward', 'nf_resnt26'], "unknown model 'nf_resnt26'", None),
    ('timm-nf list', '--img-size', ['--forward', 'nf_resnet26', '--img-size', '2048'],
     'nf_resnet26 at 2048 px needs about', GiB),

    ('timm-nf spp', 'models', ['nf_resnt50', '-o', 'out.png'], "unknown model 'nf_resnt50'", None),
    ('timm-nf spp', 'models', ['resnet18', '--img-size', '16', '-o', 'out.png'], '--img-size 16 is too small', None),
    ('timm-nf spp', '--input', [ARCH, '--input', 'missing', '-o', 'out.png'], '--input must be "gaussian" or', None),
    ('timm-nf spp', '--input', [ARCH, '--input', 'empty', '-o', 'out.png'], '--input: no images in', None),
    ('timm-nf spp', '-o', [ARCH, '-o', 'images'], '-o/--output images is a folder', None),
    ('timm-nf spp', '-o', [ARCH, '-o', 'out.xyz'], "cannot draw a figure as 'out.xyz'", None),
    ('timm-nf spp', '-o', [ARCH, '-o', '/proc/out.png'], 'no file can be created in folder /proc', None),
    ('timm-nf spp', '-o', [ARCH, '--input', 'images', '-o', 'images/a.png'], 'is an image of --input', None),
    ('timm-nf spp', '--csv', [ARCH, '-o', 'out.png', '--csv', 'out.png'], '--csv out.png: expected a file name ending'
     ' in .csv', None),
    ('timm-nf spp', '--title', [ARCH, '-o', 'out.png', '--title', r'$\frac{1}$'], '--title', None),
    ('timm-nf spp', '--blocks', [ARCH, '-o', 'out.png', '--blocks', 'nomatch.*'],
     "--blocks PATTERN: 'nomatch.*' matches no module", None),
    ('timm-nf spp', '--blocks', ['densenet121', '--img-size', '32', '-o', 'out.png'], 'with --blocks PATTERN', None),
    ('timm-nf spp', '--bn-stats', [ARCH, '-o', 'out.png', '--bn-stats', 'bogus'], 'argument --bn-stats: invalid', None),
    ('timm-nf spp', '--batch', [ARCH, '-o', 'out.png', '--batch', '65536', '--img-size', '8192'],
     'needs about', None),
    ('timm-nf spp', '--pretrained', [ARCH, '-o', 'out.png', '--pretrained'], f'{ARCH} has no published weights', None),

    ('timm-nf fuse', 'model', ['nf_resnt26', '-o', 'out.safetensors'], "unknown model 'nf_resnt26'", None),
    ('timm-nf fuse', 'model', ['resnet18', '-o', 'out.safetensors'], 'NormFreeNet', None),
    ('timm-nf fuse', 'model', ['nf_resnet50.bogus', '-o', 'out.safetensors'], "unknown pretrained tag in 'nf_resnet50.bogus'", None),
    ('timm-nf fuse', '--checkpoint', ['nf_resnet26', '--checkpoint', 'w.safetensors', '-o', 'w.safetensors'],
     '-o/--output w.safetensors is the --checkpoint file', None),
    ('timm-nf fuse', '--checkpoint', ['nf_resnet26', '--checkpoint', 'w.safetensors', '-o', 'hardlink.safetensors'],
     'is the --checkpoint file', None),
    ('timm-nf fuse', '--checkpoint', ['nf_resnet26', '--checkpoint', 'deep/w.safetensors', '-o',
                                      'link/../w.safetensors'], 'is the --checkpoint file', None),  # `..` after a link
    ('timm-nf fuse', '--checkpoint', [ARCH, '--checkpoint', 'missing.pth', '-o', 'out.safetensors'], 'not found',
     None),
    ('timm-nf fuse', '--checkpoint', [ARCH, '--checkpoint', 'empty.pth', '-o', 'out.safetensors'], 'is empty', None),
    ('timm-nf fuse', '--checkpoint', [ARCH, '--checkpoint', 'args_str.pth', '-o', 'out.safetensors'],
     "its 'args' is a str", None),
    ('timm-nf fuse', '--checkpoint', [ARCH, '--checkpoint', 'sd_list.pth', '-o', 'out.safetensors'],
     "its 'state_dict' is a list", None),
    ('timm-nf fuse', '--pretrained', [ARCH, '--pretrained', '-o', 'out.safetensors'], 'has no published weights',
     None),
    ('timm-nf fuse', '--pretrained', ['nf_resnet50', '--pretrained', '--checkpoint', 'ckpt.pth.tar', '-o',
                                      'out.safetensors'], '--pretrained and --checkpoint', None),
    ('timm-nf fuse', '-o', ['nf_resnet26', '-o', 'out.pth'], 'expected a file name ending in .safetensors', None),
    ('timm-nf fuse', '-o', ['nf_resnet26', '-o', 'images'], 'is a folder', None),

    ('timm-nf run', 'script', ['missing.py'], 'script not found: missing.py', None),
    ('timm-nf run', 'script', ['images'], 'images is a folder', None),
    ('timm-nf run', 'script', ['binary.bin'], 'is not a Python script', None),

    ('python -m hub publish', 'checkpoint', ['missing.pth', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub'],
     'not found', None),
    ('python -m hub publish', 'checkpoint', ['args_str.pth', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub'],
     "its 'args' is a str", None),
    ('python -m hub publish', 'checkpoint', ['sd_list.pth', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub'],
     "its 'state_dict' is a list", None),
    ('python -m hub publish', '--repo-id', ['ckpt.pth.tar', '--repo-id', 'acme/nope', '--out', 'pub'],
     "repo name 'nope' must be ARCH.TAG", None),
    ('python -m hub publish', '--model', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--model', 'nf_resnet26',
                                          '--out', 'pub'], 'names architecture', None),
    ('python -m hub publish', '--out', ['run/model_best.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'run',
                                        '--overwrite'], '--out run holds the checkpoint', None),
    ('python -m hub publish', '--out', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'ckpt.pth.tar'],
     '--out ckpt.pth.tar is the checkpoint', None),
    ('python -m hub publish', '--overwrite', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'mine',
                                              '--overwrite'], 'holds files that this command did not write', None),
    ('python -m hub publish', '--overwrite', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'marked',
                                              '--overwrite'], 'did not write (notes.txt)', None),
    ('python -m hub publish', '--results', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub',
                                            '--results', 'missing.csv'], '--results missing.csv not found', None),
    ('python -m hub publish', '--figures-dir', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub',
                                                '--figures-dir', 'missing'], '--figures-dir missing is not a folder',
     None),
    ('python -m hub publish', '--registry', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub',
                                             '--register', '--registry', 'missing.json'], 'cannot be updated', None),
    ('python -m hub publish', '--registry', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub',
                                             '--register', '--registry', 'notes.txt'], 'ending in .json', None),
    ('python -m hub publish', '--registry', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'regdir',
                                             '--overwrite', '--register', '--registry', 'regdir/registry.json'],
     'holds the --registry file', None),
    ('python -m hub publish', '--dataset', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub',
                                            '--dataset', 'image net'], "--dataset 'image net': expected a Hub", None),
    ('python -m hub publish', '--provenance', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub',
                                               '--provenance', 'a | b'], '--provenance must be one line', None),
    ('python -m hub publish', '--test-img-size', ['ckpt.pth.tar', '--repo-id', f'acme/{ARCH}.t', '--out', 'pub',
                                                  '--test-img-size', '8'], '--test-img-size 8 is too small', None),

    ('python -m hub verify', 'source', ['missing', '--checkpoint', 'ckpt.pth.tar'], 'neither a folder nor', None),
    ('python -m hub verify', 'source', ['images', '--checkpoint', 'ckpt.pth.tar'], 'has no config.json', None),
    ('python -m hub verify', 'source', ['cfg_empty', '--checkpoint', 'ckpt.pth.tar'], 'is not readable JSON', None),
    ('python -m hub verify', 'source', ['cfg_list', '--checkpoint', 'ckpt.pth.tar'], 'names a JSON list', None),
    ('python -m hub verify', 'source', ['cfg_other', '--checkpoint', 'ckpt.pth.tar'], "names architecture 'resnet18'",
     None),
    ('python -m hub verify', 'source', ['cfg_classes', '--checkpoint', 'ckpt.pth.tar'], "has num_classes 'ten'", None),
    ('python -m hub verify', '--checkpoint', ['cfg_ok', '--checkpoint', 'missing.pth'], 'not found', None),

    ('python -m hub card', '--out', ['--out', 'card.txt'], 'expected a file name ending in .md', None),
    ('python -m hub card', '--out', ['--out', str(ROOT / 'validate' / 'results' / 'batch_size.md')],
     'is the batch-size table the card includes', None),
    ('python -m hub card', '--out', ['--out', str(ROOT / 'validate' / 'results' / 'private.md')],
     'is the private-training table the card includes', None),

    ('python -m validate imagenet', '--data-dir', ['--data-dir', 'missing', '--models', 'nf_*', '--timm-dir',
                                                   'timm_dir'], '--data-dir missing is not a folder', None),
    ('python -m validate imagenet', '--models', ['--data-dir', 'data', '--models', 'nope*', '--timm-dir', 'timm_dir'],
     "no registered pretrained tag matches 'nope*'", None),
    ('python -m validate imagenet', '--timm-dir', ['--data-dir', 'data', '--models', 'nf_*', '--timm-dir', 'images'],
     'validate.py not found', None),
    ('python -m validate imagenet', '--weights-dir', ['--data-dir', 'data', '--models', 'nf_*', '--timm-dir',
                                                      'timm_dir', '--weights-dir', 'missing'], '--weights-dir missing',
     None),
    ('python -m validate imagenet', '--split', ['--data-dir', 'data', '--models', 'nf_*', '--timm-dir', 'timm_dir',
                                                '--split', '../x'], "--split '../x'", None),
    ('python -m validate imagenet', '--device', ['--data-dir', 'data', '--models', 'nf_*', '--device', 'gpu0'],
     'argument --device: expected a torch device', None),
    ('python -m validate imagenet', '--out', ['--data-dir', 'data', '--models', 'nf_*', '--out', 'x.txt'],
     'expected a file name ending in .csv', None),

    ('python -m validate spp', '--nf-size', ['--nf-size', '8192', '--nf-batch', '65536'], 'needs about', None),

    ('python -m validate digits', '--out-dir', ['--out-dir', 'notes.txt'], '--out-dir notes.txt is a file', None),
    ('python -m validate digits', '--out-dir', ['--out-dir', '/proc/digits'], 'no file can be created', None),
    ('python -m validate digits', '--parts', ['--parts', 'bogus'], 'argument --parts: invalid choice', None),
    ('python -m validate digits', '--batch-size', ['--out-dir', 'digits_out', '--batch-size', '1024',
                                                   '--img-size', '256'], 'needs about', GiB),

    ('python -m validate batch-size', '--out-dir', ['--out-dir', 'missing'], '--out-dir missing is not an existing',
     None),
    ('python -m validate batch-size', '--name', ['--out-dir', '.', '--name', '../x'], '--name must be a plain', None),
    ('python -m validate batch-size', '--nets', ['--nets', 'bogus'], 'argument --nets: invalid choice', None),
    ('python -m validate batch-size', '--batch-sizes', ['--out-dir', '.', '--batch-sizes', '2', '2'],
     'each seed and batch size may be given only once', None),

    ('python -m validate benchmark', '--preset', ['--preset', 'bogus'], 'argument --preset: invalid choice', None),
    ('python -m validate benchmark', '--device', ['--device', 'gpu'], 'argument --device: invalid choice', None),
    ('python -m validate benchmark', '--models', ['--models', 'resnet50'], 'argument --models: unknown model', None),
    ('python -m validate benchmark', '--rows', ['--rows', 'bogus'], 'argument --rows: unknown row', None),
    ('python -m validate benchmark', '--modes', ['--modes', 'bogus'], 'argument --modes: unknown mode', None),
    ('python -m validate benchmark', '--depths', ['--depths', '1,1'], 'argument --depths: expected four', None),
    ('python -m validate benchmark', '--out', ['--out', 'bench.txt'], 'expected a file name ending in .json', None),
    ('python -m validate benchmark', '--train-batch', ['--models', 'nf_resnet50', '--rows', 'eager', '--out',
                                                      'bench.json', '--train-batch', '65536', '--train-size', '8192'],
     'needs about', None),

    ('python -m validate private', '--out-dir', ['--out-dir', 'missing'], '--out-dir missing is not an existing', None),
    ('python -m validate private', '--out-dir', ['--out-dir', 'notes.txt'], '--out-dir notes.txt is not an existing',
     None),
    ('python -m validate private', '--name', ['--out-dir', '.', '--name', '../x'], '--name must be a plain', None),
    ('python -m validate private', '--nets', ['--out-dir', '.', '--nets', 'bn'], 'argument --nets: invalid choice',
     None),
    ('python -m validate private', '--seeds', ['--out-dir', '.', '--seeds', '1', '1'],
     'each seed and ε may be given only once', None),
    ('python -m validate private', '--epsilons', ['--out-dir', '.', '--epsilons', '3', '3'],
     'each seed and ε may be given only once', None),

    ('python -m validate dp-benchmark', '--models', ['--models', 'resnet50'], '--models resnet50: expected timm-nf',
     None),
    ('python -m validate dp-benchmark', '--modes', ['--modes', 'hooks,bogus'], '--modes hooks,bogus: expected', None),
    ('python -m validate dp-benchmark', '--size', ['--size', '16'], '--size must be at least 32', None),
    ('python -m validate dp-benchmark', '--device', ['--device', 'gpu'], 'argument --device: invalid choice', None),
    ('python -m validate dp-benchmark', '--depths', ['--depths', '1,1'], 'argument --depths: expected four', None),
    ('python -m validate dp-benchmark', '--out', ['--out', 'dp.txt'], 'expected a file name ending in .json', None),
    ('python -m validate dp-benchmark', '--batch', ['--models', 'nf_resnet26', '--batch', '65536', '--size', '1024'],
     'needs about', GiB),

    ('python -m validate.make_recipes', '--out-dir', ['--out-dir', 'notes.txt'], '--out-dir notes.txt is a file',
     None),
    # values the options took before they had bounds (also generated above): overflow, exhausted memory, NaN
    ('timm-nf spp', '--seed', [ARCH, '-o', 'out.png', '--seed', str(2 ** 70)], 'argument --seed: expected', None),
    ('timm-nf spp', '--skipinit-gain', [ARCH, '-o', 'out.png', '--skipinit-gain', '1e30'],
     'argument --skipinit-gain: expected', None),
    ('timm-nf list', '--img-size', ['--img-size', '100000'], 'argument --img-size: expected', None),
    ('python -m validate digits', '--lr', ['--lr', 'nan'], 'argument --lr: expected a finite number', None),
    ('python -m hub verify', '--atol', ['cfg_ok', '--checkpoint', 'ckpt.pth.tar', '--atol', 'nan'],
     'argument --atol: expected a finite number', None),
]
if shutil.which('xelatex') is None:  # matplotlib offers .pgf, which needs LaTeX to be written
    HOSTILE.append(('timm-nf spp', '-o', [ARCH, '-o', 'out.pgf'], 'cannot write a .pgf figure', None))


def _parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(COMMANDS[command][0])
    parser = ArgumentParser(prog=command)
    (getattr(module, 'add_arguments', None) or module._add_arguments)(parser)
    return parser


def _option_actions(command: str):
    """The parser's actions that take a value (flags and --help take none)."""
    return [a for a in _parser(command)._actions if a.nargs != 0 and not isinstance(a, argparse._HelpAction)]


def _name(action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


def _bound_cases(bounds):
    low, high, low_in, high_in, whole = bounds
    if whole:
        values = ['nan', '1.5', 'ten'] + ([str(int(low) - 1)] if low != -math.inf else []) + \
                 ([str(int(high) + 1)] if high != math.inf else [])
    else:
        values = ['nan', 'inf', '-inf', 'one']
        if low != -math.inf:
            values.append(repr(low) if not low_in else repr(low - 1))
        if high != math.inf:
            values.append(repr(high) if not high_in else repr(high * 10 + 1))
    return values


def _generated():
    cases = []
    for command, (_, _, _, base, _) in COMMANDS.items():
        for action in _option_actions(command):
            bounds = getattr(action.type, 'bounds', None)
            if bounds is None or not action.option_strings:
                continue
            for value in _bound_cases(bounds):
                cases.append((command, _name(action), base + [action.option_strings[-1], value],
                              f'argument {"/".join(action.option_strings)}: expected', None))
    return cases


CASES = HOSTILE + _generated()


def test_every_option_of_every_command_has_hostile_cases():
    """A new command or option is covered here before it ships: by a bounded type or by rows in HOSTILE."""
    import hub.__main__
    import timm_nf.cli
    import validate.__main__
    listed = {(dispatcher, name) for _, dispatcher, name, _, _ in COMMANDS.values()}
    for dispatcher, table in (('timm_nf.cli', timm_nf.cli.SUBCOMMANDS), ('hub.__main__', hub.__main__.COMMANDS),
                              ('validate.__main__', validate.__main__.JOBS)):
        missing = [name for name in table if (dispatcher, name) not in listed]
        assert not missing, f'{dispatcher}: commands without hostile cases {missing}: add them to COMMANDS and HOSTILE'
    rows = {(command, option) for command, option, _, _, _ in HOSTILE}
    for command in COMMANDS:
        for action in _option_actions(command):
            covered = getattr(action.type, 'bounds', None) is not None or (command, _name(action)) in rows
            assert covered, f'{command} {_name(action)}: no hostile case (a bounded type or a row in HOSTILE)'


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """Inputs for every case: checkpoints good and bad, images, published folders, a timm checkout and data."""
    root = tmp_path_factory.mktemp('world')
    torch.manual_seed(0)
    model = timm.create_model(ARCH, depths=(1, 1, 1, 1), num_classes=10)
    args = argparse.Namespace(model=ARCH, num_classes=10, in_chans=None, gp=None, model_kwargs={'depths': (1, 1, 1, 1)})
    torch.save(dict(arch=ARCH, args=args, epoch=1, state_dict=model.state_dict()), root / 'ckpt.pth.tar')
    torch.save(dict(arch=ARCH, args='--lr 0.1', state_dict=model.state_dict()), root / 'args_str.pth')
    torch.save(dict(arch=ARCH, args=args, state_dict=[1, 2]), root / 'sd_list.pth')
    (root / 'empty.pth').write_bytes(b'')
    save_file(timm.create_model('nf_resnet26').state_dict(), str(root / 'w.safetensors'))
    os.link(root / 'w.safetensors', root / 'hardlink.safetensors')
    (root / 'deep' / 'dir').mkdir(parents=True)  # the OS reads link/../w.safetensors as deep/w.safetensors
    shutil.copy(root / 'w.safetensors', root / 'deep' / 'w.safetensors')
    (root / 'link').symlink_to(root / 'deep' / 'dir', target_is_directory=True)
    (root / 'run').mkdir()  # a train.py output folder that also holds a config.json
    shutil.copy(root / 'ckpt.pth.tar', root / 'run' / 'model_best.pth.tar')
    (root / 'run' / 'config.json').write_text('{}')
    (root / 'mine').mkdir()
    (root / 'mine' / 'thesis.tex').write_text('years of work')
    (root / 'marked').mkdir()  # written by publish once, then a file of the user's added
    (root / 'marked' / '.timm-nf-publish.json').write_text('{"files": ["config.json"]}')
    (root / 'marked' / 'config.json').write_text('{}')
    (root / 'marked' / 'notes.txt').write_text('mine')
    (root / 'regdir').mkdir()
    shutil.copy(ROOT / 'timm_nf' / 'published_weights.json', root / 'regdir' / 'registry.json')
    (root / 'notes.txt').write_text('notes')
    (root / 'images').mkdir()
    (root / 'empty').mkdir()
    from PIL import Image
    for i in range(2):
        Image.new('RGB', (40, 40), color=(60 * i, 90, 120)).save(root / 'images' / f'{"ab"[i]}.png')
    for name, text in (('cfg_ok', f'{{"architecture": "{ARCH}", "num_classes": 10}}'), ('cfg_empty', ''),
                       ('cfg_list', '[1]'), ('cfg_other', '{"architecture": "resnet18", "num_classes": 10}'),
                       ('cfg_classes', f'{{"architecture": "{ARCH}", "num_classes": "ten"}}')):
        (root / name).mkdir()
        (root / name / 'config.json').write_text(text)
    (root / 'binary.bin').write_bytes(bytes(range(256)))
    (root / 'script.py').write_text('print("ran")\n')
    (root / 'timm_dir').mkdir()
    (root / 'timm_dir' / 'validate.py').write_text('raise SystemExit(3)\n')
    data = tmp_path_factory.mktemp('imagenet')  # linked, not walked by every snapshot
    for i in range(1000):  # ImageNet's class count: the harness says nothing about it
        (data / 'validation' / f'n{i:04d}').mkdir(parents=True)
    (root / 'data').symlink_to(data, target_is_directory=True)
    return root


def _snapshot(*places: Path) -> dict:
    """Every file and folder under `places` (symbolic links not followed), with size and modification time."""
    found = {}
    for place in places:
        if place.is_file():
            found[str(place)] = (place.stat().st_size, place.stat().st_mtime_ns)
            continue
        for folder, folders, files in os.walk(place):
            found[folder] = sorted(folders + files)
            for name in files:
                stat = os.stat(os.path.join(folder, name), follow_symlinks=False)
                found[os.path.join(folder, name)] = (stat.st_size, stat.st_mtime_ns)
    return found


def _call(command: str, argv):
    _, dispatcher, name, _, _ = COMMANDS[command]
    if dispatcher is None:
        return importlib.import_module(COMMANDS[command][0]).main(argv)
    return importlib.import_module(dispatcher).main([name] + argv)


@pytest.mark.parametrize('command, option, argv, expected, available', CASES,
                         ids=[f'{c}|{o}|{" ".join(a)[-60:]}' for c, o, a, _, _ in CASES])
def test_hostile_input_is_one_line_exit_2_and_nothing_written(world, monkeypatch, capsys, command, option, argv,
                                                              expected, available):
    monkeypatch.chdir(world)
    work = COMMANDS[command][4]
    if work is not None:
        def started(*args, **kwargs):
            raise AssertionError(f'{command}: work started before the bad input was refused')
        monkeypatch.setattr(work, started)
    if available is not None:  # a small machine, so that a memory case does not depend on this one
        monkeypatch.setattr('timm_nf._memory.available_bytes', lambda: available)
    before = _snapshot(world, *(ROOT / p for p in REPO_OUTPUTS))
    code = _call(command, argv)
    captured = capsys.readouterr()
    line = one_error_line(captured.err, command)  # exactly one line, PROG: error: ..., no traceback
    assert code == 2 and expected in line, line
    assert _snapshot(world, *(ROOT / p for p in REPO_OUTPUTS)) == before
