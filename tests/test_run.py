"""`timm-nf run` / `python -m timm_nf.run`: runs a script as __main__ with our models registered.

The launcher is tested on small scripts written here. The tests with timm's own train.py and validate.py need a
checkout of the timm repository: set TIMM_SCRIPTS_DIR=/path/to/pytorch-image-models, otherwise they are skipped.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from timm_nf import cli, run

PROBE = textwrap.dedent('''
    import json, os, sys
    import helper_next_to_the_script  # importable because the script's folder is on sys.path
    out = sys.argv[1].replace('RANK', os.environ.get('RANK', ''))  # torchrun workers: one file each
    json.dump(dict(name=__name__, file=__file__, argv=sys.argv, path0=sys.path[0],
                   registered='timm_nf' in sys.modules and __import__('timm').is_model('dm_nf_regnet_b0'),
                   rank=os.environ.get('RANK'), helper=helper_next_to_the_script.VALUE), open(out, 'w'))
    if len(sys.argv) > 2 and sys.argv[2] == '--exit':
        sys.exit(int(sys.argv[3]) if sys.argv[3].isdigit() else sys.argv[3])
''')


@pytest.fixture
def probe(tmp_path):
    folder = tmp_path / 'scripts'
    folder.mkdir()
    (folder / 'helper_next_to_the_script.py').write_text('VALUE = 42\n')
    script = folder / 'probe.py'
    script.write_text(PROBE)
    yield script
    sys.modules.pop('helper_next_to_the_script', None)


def test_runs_script_as_main_with_its_argv_file_and_folder(probe, tmp_path):
    out = tmp_path / 'out.json'
    argv_before, path_before = list(sys.argv), list(sys.path)
    assert run.main([str(probe), str(out), '--flag', 'value with spaces']) == 0
    seen = json.loads(out.read_text())
    assert seen['name'] == '__main__'
    assert Path(seen['file']).resolve() == probe.resolve()
    assert seen['argv'] == [str(probe), str(out), '--flag', 'value with spaces']
    assert Path(seen['path0']) == probe.parent.resolve()
    assert seen['helper'] == 42 and seen['registered'] is True
    assert sys.argv == argv_before and sys.path == path_before  # restored afterwards


@pytest.mark.parametrize('code, status', [('0', 0), ('3', 3), ('failed: bad input', 1)])
def test_exit_status_is_the_scripts(probe, tmp_path, code, status, capsys):
    assert run.main([str(probe), str(tmp_path / 'o.json'), '--exit', code]) == status
    if status == 1:
        assert 'failed: bad input' in capsys.readouterr().err


def test_missing_script_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(run.SCRIPTS_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert run.main(['validate.py', '--model', 'x']) == 2
    err = capsys.readouterr().err
    assert 'script not found: validate.py' in err and 'pytorch-image-models' in err


@pytest.mark.parametrize('name, content, message', [
    ('notes.txt', b'print(1)\n', 'is not a Python script'),
    ('weights.py', b'\x00\x01binary\x00', 'is not valid Python'),
    ('broken.py', b'def f(:\n', 'is not valid Python: SyntaxError'),
])
def test_non_python_file_is_a_clear_error(tmp_path, capsys, name, content, message):
    (tmp_path / name).write_bytes(content)
    assert run.main([str(tmp_path / name)]) == 2
    assert message in capsys.readouterr().err


def test_folder_and_no_arguments(tmp_path, capsys):
    assert run.main([str(tmp_path)]) == 2
    assert 'is a folder' in capsys.readouterr().err
    assert run.main([]) == 2
    assert 'timm-nf run: error: the following arguments are required: SCRIPT' in capsys.readouterr().err


def test_bare_name_is_found_in_timm_scripts_dir(probe, tmp_path, monkeypatch):
    monkeypatch.setenv(run.SCRIPTS_DIR_ENV, str(probe.parent))
    monkeypatch.chdir(tmp_path)
    assert cli.main(['run', 'probe.py', str(tmp_path / 'o.json')]) == 0  # through the `timm-nf` dispatcher
    assert json.loads((tmp_path / 'o.json').read_text())['helper'] == 42


def _env_without_autoload():
    # the start-up hook would register the models by itself; switch it off to see that the launcher does it
    return dict(os.environ, TIMM_NF_AUTOLOAD='0', OMP_NUM_THREADS='1')


def test_python_dash_m_and_torchrun(probe, tmp_path):
    out = tmp_path / 'm.json'
    subprocess.run([sys.executable, '-m', 'timm_nf.run', str(probe), str(out)], check=True, env=_env_without_autoload())
    assert json.loads(out.read_text())['registered'] is True
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2']
    subprocess.run(torchrun + ['-m', 'timm_nf.run', str(probe), str(tmp_path / 'rankRANK.json')],
                   check=True, env=_env_without_autoload(), capture_output=True)
    outs = [tmp_path / 'rank0.json', tmp_path / 'rank1.json']
    seen = [json.loads(p.read_text()) for p in outs]
    assert [s['rank'] for s in seen] == ['0', '1'] and all(s['registered'] for s in seen)


# --- with timm's own scripts (need a checkout) ---

TIMM_DIR = os.environ.get(run.SCRIPTS_DIR_ENV)
needs_timm_scripts = pytest.mark.skipif(
    not (TIMM_DIR and (Path(TIMM_DIR) / 'train.py').is_file()),
    reason=f"timm's train.py/validate.py are not on PyPI: set {run.SCRIPTS_DIR_ENV} to a pytorch-image-models checkout")


def _tiny_image_folder(root: Path) -> Path:
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (('train', 4), ('validation', 2)):
        for c in range(2):
            folder = root / split / f'class{c}'
            folder.mkdir(parents=True)
            for i in range(n):
                img = (rng.random((24, 24, 3)) * 60).astype(np.uint8)
                img[..., c] += 150
                Image.fromarray(img).save(folder / f'{i}.png')
    return root


@needs_timm_scripts
def test_timm_train_and_validate_scripts_with_our_model(tmp_path):
    data = _tiny_image_folder(tmp_path / 'data')
    common = ['--data-dir', str(data), '--model', 'dm_nf_regnet_b0', '--model-kwargs', 'depths=(1,1,1,1)',
              '--num-classes', '2', '--img-size', '32', '--device', 'cpu', '--workers', '1']
    # train.py has --device-modules; use it with the start-up hook off, so that nothing else registers the models
    subprocess.run([sys.executable, str(Path(TIMM_DIR) / 'train.py'), *common, '--device-modules', 'timm_nf',
                    '-b', '4', '--epochs', '1', '--warmup-epochs', '0', '--lr', '0.01', '--output', str(tmp_path),
                    '--experiment', 'run'], check=True, env=_env_without_autoload(), capture_output=True,
                   cwd=TIMM_DIR)
    checkpoint = tmp_path / 'run' / 'last.pth.tar'
    assert checkpoint.is_file()
    results = tmp_path / 'val.json'
    subprocess.run([sys.executable, '-m', 'timm_nf.run', str(Path(TIMM_DIR) / 'validate.py'), *common,
                    '--checkpoint', str(checkpoint), '-b', '4', '--results-file', str(results),
                    '--results-format', 'json'], check=True, env=_env_without_autoload(), capture_output=True)
    result = json.loads(results.read_text())
    assert result['model'] == 'dm_nf_regnet_b0' and result['img_size'] == 32 and 0 <= result['top1'] <= 100
