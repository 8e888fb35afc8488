"""The command-line convention: bad input is one line on stderr naming the problem and what was expected, exit status
2, no traceback, and no output file written or replaced; output paths are checked before any work."""
import argparse
import os
import subprocess
import sys

import pytest
import torch
import timm
import safetensors.torch
from safetensors.torch import save_file

from helpers import one_error_line
from timm_nf import cli
from timm_nf.fusion import load_fused
from timm_nf.fused_file import FusedFileError
from timm_nf.spp import cli as spp_cli

ARCH = 'dm_nf_regnet_b0'
SHALLOW = dict(depths=(1, 1, 1, 1))
UNWRITABLE = '/proc'  # no file can be created there, not even by root


def _run(capsys, *argv):
    """(exit status, stdout, stderr) of `timm-nf ARGV` in this process."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _train_checkpoint(path, arch=ARCH, **model_kwargs):
    """A checkpoint laid out as timm's train.py writes it: raw and EMA weights, args recording the model."""
    torch.manual_seed(0)
    raw = timm.create_model(arch, num_classes=10, **model_kwargs).state_dict()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in raw.items()}
    args = argparse.Namespace(model=arch, num_classes=10, in_chans=None, gp=None, model_kwargs=model_kwargs)
    torch.save(dict(arch=arch, args=args, epoch=1, state_dict={f'module.{k}': v for k, v in raw.items()},
                    state_dict_ema=ema), path)
    return path, raw, ema


# --- dispatch -------------------------------------------------------------------------------------------------

def test_dispatchers_share_one_convention(capsys):
    from hub.__main__ import main as hub_main
    from validate.__main__ import main as validate_main
    for main, prog, noun in ((cli.main, 'timm-nf', 'command'), (hub_main, 'python -m hub', 'command'),
                             (validate_main, 'python -m validate', 'job')):
        assert main([]) == 2
        assert f'no {noun} given: expected one of' in one_error_line(capsys.readouterr().err, prog)
        assert main(['frobnicate']) == 2
        assert f"unknown {noun} 'frobnicate'" in one_error_line(capsys.readouterr().err, prog)
        assert main(['--help']) == 0 and f'usage: {prog} {noun.upper()}' in capsys.readouterr().out
    assert cli.main(['sp']) == 2 and "did you mean 'spp'?" in capsys.readouterr().err


def test_argparse_errors_are_one_line(capsys):
    code, _, err = _run(capsys, 'spp', ARCH)
    assert code == 2 and 'required: -o/--output' in one_error_line(err, 'timm-nf spp')
    code, _, err = _run(capsys, 'list', '--img-size', '-3')
    assert code == 2 and 'expected a whole number in [1, 8192], got -3' in one_error_line(err, 'timm-nf list')


def test_console_script_exits_2_without_a_traceback(tmp_path):
    run = subprocess.run([sys.executable, '-m', 'timm_nf.cli', 'fuse', 'nf_resnet26', '-o', str(tmp_path / 'x.pth')],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ''
    assert run.stderr == 'timm-nf fuse: error: -o/--output ' + str(tmp_path / 'x.pth') + \
        ': expected a file name ending in .safetensors\n'


# --- timm-nf spp: every output is checked before the first model is built ---------------------------------------

@pytest.fixture
def no_measuring(monkeypatch):
    def measure(*args):
        raise AssertionError('a model was measured before the output paths were checked')
    monkeypatch.setattr(spp_cli, '_measure', measure)


@pytest.mark.parametrize('extra, message', [
    (['--csv', '{dir}'], 'is a folder: expected a file name ending in .csv'),
    (['--csv', UNWRITABLE + '/spp.csv'], 'no file can be created in folder /proc'),
    (['--csv', '{dir}/figure.png'], 'expected a file name ending in .csv'),  # would have replaced the figure
    (['--csv', '{dir}/missing/spp.csv'], 'does not exist'),
    (['-o', UNWRITABLE + '/spp.png'], 'no file can be created in folder /proc'),
    (['-o', '{dir}/afile/spp.png'], 'is a file, not a folder'),
])
def test_spp_outputs_are_checked_first(tmp_path, capsys, no_measuring, extra, message):
    (tmp_path / 'afile').write_text('x')
    figure = tmp_path / 'figure.png'
    figure.write_bytes(b'previous figure')
    argv = ['spp', ARCH, '-o', figure] + [a.format(dir=tmp_path) for a in extra]
    code, _, err = _run(capsys, *argv)
    assert code == 2 and message in one_error_line(err, 'timm-nf spp')
    assert figure.read_bytes() == b'previous figure'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['afile', 'figure.png']


def test_spp_writes_both_files_or_neither(tmp_path, monkeypatch):
    figure, table = tmp_path / 'spp.png', tmp_path / 'spp.csv'
    figure.write_bytes(b'previous figure')
    table.write_text('previous table')

    def failing_csv(results, path):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(spp_cli, 'write_csv', failing_csv)
    result = timm_spp_result()
    with pytest.raises(OSError):
        spp_cli._write([result], argparse.Namespace(output=str(figure), csv=str(table), title=None))
    assert figure.read_bytes() == b'previous figure' and table.read_text() == 'previous table'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['spp.csv', 'spp.png']


def timm_spp_result():
    from timm_nf.spp import BlockStats, SPPResult
    return SPPResult('x', [BlockStats(0, 0, 0, 0.0, 1.0), BlockStats(1, 1, 0, 0.0, 1.04, 1.0)])


# --- timm-nf fuse -------------------------------------------------------------------------------------------------

def test_fuse_uses_the_ema_weights_and_says_so(tmp_path, capsys):
    checkpoint, raw, ema = _train_checkpoint(tmp_path / 'model_best.pth.tar', **SHALLOW)
    for flags, expected, note in (([], ema, "state_dict_ema of model_best.pth.tar (train.py's EMA weights"),
                                  (['--no-ema'], raw, 'state_dict of model_best.pth.tar')):
        out = tmp_path / 'fused.safetensors'
        code, stdout, err = _run(capsys, 'fuse', ARCH, '--checkpoint', tmp_path, '-o', out, *flags)
        assert code == 0, err
        assert f'weights: {note}' in stdout
        reference = timm.create_model(ARCH, num_classes=10, **SHALLOW).eval()
        reference.load_state_dict(expected)
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():  # depths and num_classes came from the checkpoint's train.py args, into the file
            torch.testing.assert_close(load_fused(str(out))(x), reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('content, message', [
    (b'', 'is empty (0 bytes)'),
    (b'model weights: see the shared drive\n', "is a text file (it starts with 'model weights: see the shared"),
    ('truncated', 'is not a readable PyTorch checkpoint (truncated or corrupt?)'),
    ('other_arch', 'does not hold dm_nf_regnet_b0 weights (the checkpoint says it is nf_regnet_b0)'),
])
def test_fuse_bad_checkpoints(tmp_path, capsys, content, message):
    path = tmp_path / 'ckpt.pth'
    if content == 'truncated':
        _train_checkpoint(path, **SHALLOW)
        path.write_bytes(path.read_bytes()[:5000])
    elif content == 'other_arch':
        _train_checkpoint(path, 'nf_regnet_b0', **SHALLOW)
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    code, _, err = _run(capsys, 'fuse', ARCH, '--checkpoint', path, '-o', tmp_path / 'out.safetensors')
    line = one_error_line(err, 'timm-nf fuse')
    assert code == 2 and message in line
    if content == 'other_arch':
        assert 'unexpected keys' in line or 'missing keys' in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt.pth'] and path.read_bytes() == before


@pytest.mark.parametrize('argv, message', [
    (['nf_resnet26', '--in-chans', '0'], 'argument --in-chans: expected a whole number in [1, 16384], got 0'),
    (['nf_resnet26', '--num-classes', '-1'], 'argument --num-classes: expected a whole number in [0, 1000000]'),
    (['nf_resnet26', '-o', '{dir}/x.pth'], '-o/--output {dir}/x.pth: expected a file name ending in .safetensors'),
    (['nf_resnet26', '-o', '{dir}'], 'is a folder'),
    (['nf_resnt26'], "unknown model 'nf_resnt26'; close matches: nf_resnet26"),
    (['resnet18'], 'NormFreeNet'),  # fuse's own TypeError: not a normalizer-free net
])
def test_fuse_bad_arguments(tmp_path, capsys, argv, message):
    argv = [a.format(dir=tmp_path) for a in argv]
    if '-o' not in argv:
        argv += ['-o', str(tmp_path / 'x.safetensors')]
    code, _, err = _run(capsys, 'fuse', *argv)
    assert code == 2 and message.format(dir=tmp_path) in one_error_line(err, 'timm-nf fuse')
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """huggingface_hub's cache in a fresh folder and an endpoint that refuses connections, as on a machine without
    network; a retry (huggingface_hub sleeps between retries) fails the test: offline is one line, at once."""
    import socket

    import huggingface_hub.constants
    import huggingface_hub.utils._http
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(huggingface_hub.constants, 'ENDPOINT', f'http://127.0.0.1:{port}')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path / 'hf_cache'))

    def no_retries(seconds):
        raise AssertionError(f'huggingface_hub retried (slept {seconds} s) instead of failing at once')

    monkeypatch.setattr(huggingface_hub.utils._http.time, 'sleep', no_retries)
    return tmp_path / 'hf_cache'


def _cache_hub_file(cache, repo_id: str, name: str, write) -> None:
    """A file of a Hub repo as huggingface_hub's cache holds it after a download."""
    snapshot = cache / f'models--{repo_id.replace("/", "--")}' / 'snapshots' / ('0' * 40)
    snapshot.mkdir(parents=True)
    write(snapshot / name)
    (snapshot.parent.parent / 'refs').mkdir()
    (snapshot.parent.parent / 'refs' / 'main').write_text('0' * 40)


def test_fuse_of_a_pretrained_tag_fuses_the_published_weights(tmp_path, offline_hub, capsys):
    torch.manual_seed(7)
    published = timm.create_model('nf_regnet_b1').eval()  # stands in for timm's nf_regnet_b1.ra2_in1k weights
    _cache_hub_file(offline_hub, 'timm/nf_regnet_b1.ra2_in1k', 'model.safetensors',
                    lambda path: save_file(published.state_dict(), str(path)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = published(x)
    for argv, out in ((['nf_regnet_b1.ra2_in1k'], tmp_path / 'tag.safetensors'),  # a tag, or --pretrained
                      (['nf_regnet_b1', '--pretrained'], tmp_path / 'flag.safetensors')):
        code, stdout, err = _run(capsys, 'fuse', *argv, '-o', out)
        assert code == 0, err
        assert 'weights: the published nf_regnet_b1.ra2_in1k weights' in stdout
    with torch.no_grad():  # the published weights, from the cache: never random ones under the tag's name
        torch.testing.assert_close(load_fused(str(tmp_path / 'tag.safetensors'))(x), expected, rtol=1e-4, atol=1e-4)
    tag, flag = (safetensors.torch.load_file(str(tmp_path / f'{n}.safetensors')) for n in ('tag', 'flag'))
    assert tag.keys() == flag.keys() and all(torch.equal(tag[k], flag[k]) for k in tag)
    code, _, err = _run(capsys, 'fuse', 'nf_resnet50.ra2_in1k', '-o', tmp_path / 'other.safetensors')
    assert code == 2 and 'cannot download the weights of nf_resnet50.ra2_in1k' in one_error_line(err, 'timm-nf fuse')
    assert 'cannot be reached' in err and not (tmp_path / 'other.safetensors').exists()
    code, _, err = _run(capsys, 'spp', 'resnet18', '--pretrained', '-o', tmp_path / 'spp.png')
    assert code == 2 and 'cannot download the weights of resnet18' in one_error_line(err, 'timm-nf spp')


def test_fixed_size_timm_models_are_built_at_the_size_asked(tmp_path, capsys):
    code, out, err = _run(capsys, 'list', 'dm_nf_regnet_b0', '--forward', 'vit_tiny_patch16_224', '--img-size', '64')
    assert code == 0, err
    assert 'forward vit_tiny_patch16_224: input (2, 3, 64, 64) -> logits (2, 1000), finite=True' in out
    table = tmp_path / 'spp.csv'
    code, _, err = _run(capsys, 'spp', 'vit_tiny_patch16_224', '--img-size', '64', '--batch', '2', '-o',
                        tmp_path / 'spp.png', '--csv', table)
    assert code == 0, err
    assert len(table.read_text().splitlines()) == 1 + 13  # header, the stem and 12 blocks


def test_spp_refuses_statistics_that_overflowed(tmp_path, capsys):
    code, _, err = _run(capsys, 'spp', 'dm_nf_regnet_b0', '--img-size', '64', '--batch', '2', '--skipinit-gain',
                        '1000', '-o', tmp_path / 'spp.png')
    line = one_error_line(err, 'timm-nf spp')
    assert code == 2 and 'the activations overflowed float32' in line and '--skipinit-gain 1000' in line
    assert list(tmp_path.iterdir()) == []


# --- load_fused: a clear error for every file that is not fused weights -------------------------------------------

@pytest.fixture(scope='module')
def fused_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('fused') / 'fused.safetensors'
    assert cli.main(['fuse', 'nf_resnet26', '-o', str(path), '--num-classes', '5']) == 0
    return path


@pytest.mark.parametrize('make, message', [
    (lambda p, f: p.write_bytes(b''), 'is empty (0 bytes)'),
    (lambda p, f: p.write_text('hello\n'), "is a text file (it starts with 'hello')"),
    (lambda p, f: torch.save({'w': torch.ones(2)}, p), 'is a PyTorch checkpoint (torch.save), not fused weights'),
    (lambda p, f: p.write_bytes(f.read_bytes()[:1000]), 'truncated or corrupt'),
    (lambda p, f: save_file({'w': torch.ones(2)}, str(p)), "has no `timm-nf fuse` metadata naming its model"),
    (lambda p, f: None, 'does not exist'),
])
def test_load_fused_errors(tmp_path, fused_file, make, message):
    path = tmp_path / 'x.pth'
    make(path, fused_file)
    with pytest.raises(FusedFileError, match=message.replace('(', r'\(').replace(')', r'\)')):
        load_fused(str(path))


def test_load_fused_names_the_keys_of_another_model(fused_file):
    with pytest.raises(FusedFileError, match=r'does not hold fused nf_regnet_b0 weights .*missing keys'):
        load_fused(str(fused_file), model_name='nf_regnet_b0', depths=(1, 1, 1, 1))
    model = load_fused(str(fused_file))
    assert model.num_classes == 5 and not model.training


# --- timm-nf run and list --------------------------------------------------------------------------------------

def test_run_passes_the_scripts_arguments_untouched(tmp_path, capsys):
    script = tmp_path / 'echo.py'
    script.write_text('import json, sys\nprint(json.dumps(sys.argv[1:]))\n')
    code, out, _ = _run(capsys, 'run', script, '--model', 'x', '--', '-h')
    assert code == 0 and out.strip() == '["--model", "x", "--", "-h"]'


def test_list_rejects_unknown_names_before_printing(capsys):
    code, out, err = _run(capsys, 'list', '--forward', 'dm_nf_regnet_b0,nf_resnet5O')
    assert code == 2 and out == ''
    assert "unknown model 'nf_resnet5O'; close matches: nf_resnet50" in one_error_line(err, 'timm-nf list')


def test_progress_is_quiet_when_piped_or_in_ci(monkeypatch):
    from timm_nf._progress import progress_wanted

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.delenv('CI', raising=False)
    monkeypatch.setattr(sys, 'stderr', Terminal())
    assert progress_wanted() is True and progress_wanted(False) is False
    monkeypatch.setenv('CI', 'true')
    assert progress_wanted() is False and progress_wanted(True) is True
    monkeypatch.delenv('CI')
    monkeypatch.setattr(sys, 'stderr', open(os.devnull, 'w'))
    assert progress_wanted() is False


def test_readme_quick_start_needs_only_core_dependencies():
    """.ci/run runs the quick start's first line in a venv holding only torch; this test fails earlier and cheaper
    when the line or the dependencies drift apart."""
    import re
    from pathlib import Path

    from timm_nf._command_line import ArgumentParser
    tomllib = pytest.importorskip('tomllib')  # Python 3.11+
    root = Path(__file__).resolve().parent.parent
    section = root.joinpath('README.md').read_text().split('## Quick start', 1)[1].split('\n## ', 1)[0]
    lines = re.search(r'```bash\n(.*?)```', section, flags=re.S).group(1).strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith('pip install -e . && timm-nf spp ')
    argv = lines[0].split('timm-nf ', 1)[1].split()
    parser = ArgumentParser(prog='timm-nf spp')
    spp_cli.add_arguments(parser)
    parser.parse_args(argv[1:])  # every option of the README line exists
    core = tomllib.loads(root.joinpath('pyproject.toml').read_text())['project']['dependencies']
    for needed in ('matplotlib', 'tqdm', 'timm', 'torch'):  # what `timm-nf spp` imports
        assert any(re.match(rf'{needed}\b', d) for d in core), needed
