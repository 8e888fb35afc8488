"""hub/: publish a train.py checkpoint, serve it the way the Hub does, load it back as a user would; bad input.

The round trip runs offline: a real Hub-compatible server (olah, serving a local git mirror) on 127.0.0.1 when olah
is installed; otherwise the folder is placed in huggingface_hub's cache layout and loaded with HF_HUB_OFFLINE=1.
"""
import argparse
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
import timm
import yaml
from torch.utils.flop_counter import FlopCounterMode

import hub.publish
import hub.upload
import timm_nf._atomic
from hub.flops import params_and_macs
from hub.verify import fixed_input
from timm_nf.checkpoint import read_checkpoint
from timm_nf.models.published import PUBLISHED_WEIGHTS_FILE, load_published, upsert_published

from helpers import one_error_line, perturb_

ROOT = Path(__file__).resolve().parent.parent
ARCH = 'dm_nf_regnet_b0'
REPO = f'acme/{ARCH}.test'
FAKE_TOKEN = 'hf_thisIsNotARealTokenButMustNeverBeWritten'


def _weights(seed: int, **kwargs) -> dict:
    with torch.random.fork_rng():  # the same weights every time they are asked for
        torch.manual_seed(seed)
        model = perturb_(timm.create_model(ARCH, num_classes=10, **kwargs), seed=seed)
    with torch.no_grad():  # dm_ heads start at zero: give the logits something to depend on
        model.head.fc.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed))
    return model.state_dict()


def _write_train_checkpoint(path: Path, **model_kwargs) -> Path:
    """A checkpoint laid out as timm's train.py CheckpointSaver writes it (DDP / compile prefixes included)."""
    args = argparse.Namespace(model=ARCH, num_classes=10, in_chans=None, gp=None, model_kwargs=model_kwargs,
                              img_size=64, input_size=None, crop_pct=None, mean=None, std=None, interpolation='',
                              dataset='torch/cifar10', epochs=3, batch_size=8, opt='sgd', lr=0.01, model_ema=True)
    torch.save(dict(
        epoch=2, arch=ARCH, args=args, metric=61.5, version=2, optimizer={},
        state_dict={f'module.{k}': v for k, v in _weights(1, **model_kwargs).items()},
        state_dict_ema={f'_orig_mod.{k}': v for k, v in _weights(2, **model_kwargs).items()}), path)
    return path


def _publish(*argv) -> int:
    return hub.publish.main([str(a) for a in argv])


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    return tmp_path_factory.mktemp('hub')


@pytest.fixture(scope='module')
def checkpoint(work):
    return _write_train_checkpoint(work / 'model_best.pth.tar')


@pytest.fixture(scope='module')
def registry(work):
    copy = work / 'published_weights.json'
    shutil.copy(PUBLISHED_WEIGHTS_FILE, copy)
    return copy


@pytest.fixture(scope='module')
def published(work, checkpoint, registry):
    out, results = work / 'repo', work / 'results.csv'
    results.write_text(f'model,img_size,crop_pct,top1,top5\n{ARCH}.test,64,0.875,61.25,97.5\nother,64,1,1,1\n')
    # the train.py output folder: model_best.pth.tar is picked from it
    assert _publish(checkpoint.parent, '--repo-id', REPO, '--out', out, '--register', '--registry', registry,
                    '--results', results) == 0
    return out


def _reference(checkpoint: Path, use_ema: bool = True) -> torch.nn.Module:
    from timm_nf.checkpoint import build_model
    return build_model(read_checkpoint(checkpoint, use_ema=use_ema))


def test_publish_writes_a_timm_hub_folder(published, checkpoint, registry):
    names = {p.name for p in published.iterdir()}
    assert {'model.safetensors', 'config.json', 'README.md'} <= names
    assert 'pytorch_model.bin' not in names and not list(published.parent.glob(f'.{ARCH}.test.*'))
    config = json.loads((published / 'config.json').read_text())
    assert config['architecture'] == ARCH and config['num_classes'] == 10
    assert config['model_args']['num_classes'] == 10
    assert config['pretrained_cfg']['input_size'] == [3, 64, 64]  # train.py's --img-size 64
    # the EMA weights by default, prefixes stripped
    tensors = safetensors.torch.load_file(published / 'model.safetensors')
    ema = _weights(2)
    assert tensors.keys() == ema.keys() and all(torch.equal(tensors[k], ema[k]) for k in ema)

    readme = (published / 'README.md').read_text()
    front = yaml.safe_load(readme.split('---\n')[1])
    assert front['library_name'] == 'timm' and front['license'] == 'apache-2.0'
    assert 'timm' in front['tags'] and front['datasets'] == ['cifar10'] and front['metrics'] == ['accuracy']
    params, macs = params_and_macs(ARCH, [64], num_classes=10)
    assert f'**Params (M):** {params / 1e6:.2f}' in readme and f'{macs[64] / 1e9:.2f}' in readme
    assert '| lr | `0.01` |' in readme and 'state_dict_ema' in readme and f"'hf-hub:{REPO}'" in readme
    # the repository's SPP figures are of ResNets: a RegNet card shows none of them
    assert not list(published.glob('spp_*')) and '](spp_' not in readme

    # validation results: a table, the Hub's model-index, and the registry's metrics
    assert '| dm_nf_regnet_b0.test | 64 | 0.875 | 61.25 | 97.5 | results.csv |' in readme and '| other |' not in readme
    assert front['model-index'][0]['results'][0]['metrics'][0]['value'] == 61.25
    entry = next(e for e in load_published(registry) if e['tag'] == f'{ARCH}.test')
    assert entry['pretrained_cfg']['hf_hub_id'] == REPO and entry['pretrained_cfg']['num_classes'] == 10
    assert entry['metrics'] == {'cifar10_top1': {'64': 61.25}, 'cifar10_top5': {'64': 97.5}}
    assert {e['tag'] for e in load_published()} == {e['tag'] for e in load_published(registry)} - {f'{ARCH}.test'}


def test_a_card_shows_the_spp_figure_of_its_own_family(tmp_path):
    for name in ('spp_nf_resnet600.png', 'spp_resnet50_flavours.png'):
        (tmp_path / name).write_bytes(b'png')
    assert hub.publish._spp_figure('dm_nf_resnet101', tmp_path).name == 'spp_nf_resnet600.png'
    # the timm family's card shows timm's NF-ResNet-50 beside ours, never the paper-exact NF-ResNet-600
    assert hub.publish._spp_figure('nf_resnet50', tmp_path).name == 'spp_resnet50_flavours.png'
    assert hub.publish._spp_figure('nf_regnet_b1', tmp_path) is None  # never a ResNet's figure instead
    (tmp_path / 'spp_nf_regnet_b0.png').write_bytes(b'png')
    assert hub.publish._spp_figure('dm_nf_regnet_b0', tmp_path) is None  # the other family's RegNet
    assert hub.publish._spp_figure('nf_regnet_b0', tmp_path).name == 'spp_nf_regnet_b0.png'


def test_no_ema_publishes_the_raw_weights_and_overwrite_is_explicit(work, published, checkpoint, capsys):
    out = work / 'raw'
    shutil.copytree(published, out)
    assert _publish(checkpoint, '--repo-id', REPO, '--out', out, '--no-ema') == 2
    assert 'pass --overwrite' in capsys.readouterr().err
    assert _publish(checkpoint, '--repo-id', REPO, '--out', out, '--no-ema', '--overwrite') == 0
    tensors, raw = safetensors.torch.load_file(out / 'model.safetensors'), _weights(1)
    assert all(torch.equal(tensors[k], raw[k]) for k in raw)
    assert not list(work.glob('.*'))  # neither the build folder nor the replaced one is left behind


def test_a_checkpoint_of_four_input_channels_publishes_and_verifies(work, capsys):
    torch.manual_seed(3)
    kwargs = dict(num_classes=10, in_chans=4, depths=(1, 1, 1, 1))
    model = perturb_(timm.create_model(ARCH, **kwargs))
    args = argparse.Namespace(model=ARCH, num_classes=10, in_chans=4, gp=None, model_kwargs={'depths': (1, 1, 1, 1)},
                              img_size=64)
    checkpoint, out = work / 'four_channels.pth.tar', work / 'four_channels'
    torch.save(dict(arch=ARCH, args=args, epoch=0, state_dict=model.state_dict()), checkpoint)
    assert _publish(checkpoint, '--repo-id', REPO, '--out', out) == 0  # the MAC count took 3 channels: a traceback
    assert json.loads((out / 'config.json').read_text())['pretrained_cfg']['input_size'] == [4, 64, 64]
    params, macs = params_and_macs(ARCH, [64], **kwargs)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.randn(1, 4, 64, 64))
    assert macs[64] * 2 == counter.get_total_flops() and f'{macs[64] / 1e9:.2f}' in (out / 'README.md').read_text()
    from hub.verify import main as verify
    assert verify([str(out), '--checkpoint', str(checkpoint)]) == 0
    assert 'PASS  logits: max |Δ| = 0 on a fixed (2, 4, 64, 64) input' in capsys.readouterr().out


def test_a_registry_that_cannot_be_written_stops_publish_before_anything_is_built(work, checkpoint, monkeypatch,
                                                                                 capsys):
    import tempfile
    registry = work / 'locked' / 'published_weights.json'
    registry.parent.mkdir()
    shutil.copy(PUBLISHED_WEIGHTS_FILE, registry)
    before, out = registry.read_text(), work / 'locked_out'
    create = tempfile.mkstemp

    def read_only_folder(*args, dir=None, **kwargs):  # what a folder without write permission does (tests run as root)
        if dir is not None and Path(dir).resolve() == registry.parent.resolve():
            raise PermissionError(13, 'Permission denied')
        return create(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, 'mkstemp', read_only_folder)
    assert _publish(checkpoint, '--repo-id', REPO, '--out', out, '--register', '--registry', registry) == 2
    line = _error_line(capsys)
    assert 'cannot write' in line and 'no file can be created in folder' in line and 'Permission denied' in line
    assert not out.exists() and registry.read_text() == before and not list(work.glob('.*'))


# --- serving the folder the way the Hub does ---------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _git_mirror(folder: Path, mirrors: Path) -> None:
    repo = mirrors / 'models' / REPO
    shutil.copytree(folder, repo)
    git = ['git', '-c', 'user.name=test', '-c', 'user.email=test@example.com', '-C', str(repo)]
    for cmd in (['init', '-q', '-b', 'main'], ['add', '-A'], ['commit', '-q', '-m', 'publish']):
        subprocess.run(git + cmd, check=True)


def _start_olah(root: Path, mirrors: Path):
    """olah on 127.0.0.1 serving `mirrors` offline; (process, endpoint) or None if olah is missing or fails."""
    if shutil.which('git') is None or subprocess.run([sys.executable, '-c', 'import olah.server'],
                                                     capture_output=True).returncode:
        return None
    port = _free_port()
    (root / 'olah.toml').write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nmirror-netloc = "127.0.0.1:{port}"\n'
        f'mirror-lfs-netloc = "127.0.0.1:{port}"\nrepos-path = "{root / "repos"}"\n'
        f'mirrors-path = ["{mirrors}"]\n[accessibility]\noffline = true\n')
    proc = subprocess.Popen([sys.executable, '-m', 'olah.server', '-c', 'olah.toml'], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
            return proc, f'http://127.0.0.1:{port}'
        except OSError:
            if proc.poll() is not None:
                return None
            time.sleep(0.25)
    proc.terminate()
    return None


def _seed_hf_cache(folder: Path, hf_home: Path) -> None:
    """The fallback: the folder as huggingface_hub's cache holds a downloaded repo (used with HF_HUB_OFFLINE=1)."""
    commit = '0' * 40
    repo = hf_home / 'hub' / f'models--{REPO.replace("/", "--")}'
    shutil.copytree(folder, repo / 'snapshots' / commit)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(commit)


_USER_SCRIPT = '''
import importlib, sys, warnings
from pathlib import Path
import torch, timm
import timm_nf
from timm_nf.models import nfnet, published
from hub.verify import main as verify

registry, repo, tag, checkpoint, out = sys.argv[1:]
published.PUBLISHED_WEIGHTS_FILE = Path(registry)  # the registry copy holding the new tag, then register again
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    importlib.reload(nfnet)
x = torch.load(out)
hub_model = timm.create_model('hf-hub:' + repo, pretrained=True).eval()
tag_model = timm.create_model(tag, pretrained=True).eval()
with torch.no_grad():
    result = dict(hub=hub_model(x), tag=tag_model(x), tag_hub_id=tag_model.pretrained_cfg['hf_hub_id'])
result['verify'] = verify(['hf-hub:' + repo, '--checkpoint', checkpoint])
torch.save(result, out)
'''


def test_round_trip_through_the_hub(work, published, checkpoint, registry):
    root = work / 'serve'
    mirrors = root / 'mirrors'
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith('HF_')}
    env.update(HF_HOME=str(root / 'hf_home'), PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / 'tests')]))
    _git_mirror(published, mirrors)
    server = _start_olah(root, mirrors)
    if server is not None:
        env['HF_ENDPOINT'] = server[1]
    else:
        _seed_hf_cache(published, root / 'hf_home')
        env['HF_HUB_OFFLINE'] = '1'
    x = fixed_input(3, 64)
    torch.save(x, root / 'io.pt')
    (root / 'user.py').write_text(_USER_SCRIPT)
    try:
        run = subprocess.run([sys.executable, str(root / 'user.py'), str(registry), REPO, f'{ARCH}.test',
                              str(checkpoint), str(root / 'io.pt')], env=env, capture_output=True, text=True,
                             timeout=300)
    finally:
        if server is not None:
            server[0].terminate()
            server[0].wait(timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    result = torch.load(root / 'io.pt')
    with torch.no_grad():
        expected = _reference(checkpoint)(x)
    assert torch.equal(result['hub'], expected) and torch.equal(result['tag'], expected)
    assert result['tag_hub_id'] == REPO and result['verify'] == 0
    assert 'PASS  logits: max |Δ| = 0' in run.stdout
    if server is not None:  # the files came from the server: they are in the fresh cache now
        assert list((root / 'hf_home' / 'hub').glob('models--acme--*/snapshots/*/model.safetensors'))


def test_architecture_override_round_trip_and_no_tag(work):
    checkpoint = _write_train_checkpoint(work / 'shallow.pth.tar', depths=(1, 1, 1, 1))
    registry = work / 'registry_shallow.json'
    shutil.copy(PUBLISHED_WEIGHTS_FILE, registry)
    before = registry.read_text()
    refused = work / 'shallow_refused'
    assert _publish(checkpoint, '--repo-id', REPO, '--out', refused, '--register', '--registry', registry) == 2
    assert not refused.exists() and registry.read_text() == before

    out = work / 'shallow'
    assert _publish(checkpoint, '--repo-id', REPO, '--out', out) == 0
    assert json.loads((out / 'config.json').read_text())['model_args']['depths'] == [1, 1, 1, 1]
    model = timm.create_model(f'local-dir:{out}', pretrained=True).eval()
    assert [len(s) for s in model.stages] == [1, 1, 1, 1]
    x = fixed_input(3, 64)
    with torch.no_grad():
        assert torch.equal(model(x), _reference(checkpoint)(x))


# --- bad input --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('repo_id', [
    f'acme/{ARCH}..test', f'acme/{ARCH}.test-', f'{ARCH}.test', 'acme/not_a_model.test', f'acme/{ARCH}',
    f'acme/{ARCH}.a.b', f'ac me/{ARCH}.test', f'acme/{ARCH}.' + 'x' * 90, f'acme/{ARCH}.test.git'])
def test_rejected_repo_ids_write_nothing(work, checkpoint, registry, repo_id, capsys):
    before, out = registry.read_text(), work / 'rejected'
    assert _publish(checkpoint, '--repo-id', repo_id, '--out', out, '--register', '--registry', registry) == 2
    assert capsys.readouterr().err.startswith("python -m hub publish: error: ")
    assert not out.exists() and not list(work.glob('.*')) and registry.read_text() == before


def test_command_line_dispatch(capsys):
    from hub.__main__ import main
    assert main([]) == 2 and 'no command given: expected one of publish, verify, card' in capsys.readouterr().err
    assert main(['publish', 'x.pth.tar', '--repo-id', 'acme/nope']) == 2
    assert "repo name 'nope' must be ARCH.TAG" in capsys.readouterr().err


def test_other_architecture_names_the_mismatched_keys(work, checkpoint, capsys):
    out = work / 'other_arch'
    assert _publish(checkpoint, '--repo-id', 'acme/nf_regnet_b0.test', '--out', out) == 2
    message = capsys.readouterr().err
    assert 'unexpected keys' in message and 'skipinit_gain' in message  # dm_ blocks have a scalar gain
    assert 'shape mismatches' in message and not out.exists()


def test_corrupt_weights_are_reported(work, published, checkpoint, capsys):
    truncated = work / 'truncated'
    shutil.copytree(published, truncated)
    data = (truncated / 'model.safetensors').read_bytes()
    (truncated / 'model.safetensors').write_bytes(data[:len(data) // 2])
    from hub.verify import main as verify
    assert verify([str(truncated), '--checkpoint', str(checkpoint)]) == 1
    assert 'truncated or corrupt' in capsys.readouterr().out
    assert _publish(truncated / 'model.safetensors', '--repo-id', REPO, '--out', work / 'from_bad') == 2
    assert 'truncated or corrupt' in capsys.readouterr().err and not (work / 'from_bad').exists()

    flipped = work / 'flipped'  # the header is fine, one weight is not: only the checksums can tell
    shutil.copytree(published, flipped)
    raw = bytearray((flipped / 'model.safetensors').read_bytes())
    raw[-5] ^= 0xFF
    (flipped / 'model.safetensors').write_bytes(bytes(raw))
    assert verify([str(flipped), '--checkpoint', str(checkpoint)]) == 1
    assert 'FAIL  tensor checksums: 1 tensors differ' in capsys.readouterr().out


def _error_line(capsys, prog='python -m hub publish') -> str:
    return one_error_line(capsys.readouterr().err, prog)


@pytest.mark.parametrize('flags, message', [
    (['--test-img-size', '-5'], 'argument --test-img-size: expected a whole number in [1, 8192], got -5'),
    (['--test-img-size', '8'], '--test-img-size 8 is too small: expected 32 px or more'),
    (['--test-crop-pct', '1.5'], "argument --test-crop-pct: expected a finite number in (0, 1], got '1.5'"),
    (['--results', '{work}/no_results.csv'], 'no_results.csv not found'),
])
def test_bad_options_stop_before_anything_is_built(work, checkpoint, capsys, flags, message):
    out = work / 'bad_options'
    assert _publish(checkpoint, '--repo-id', REPO, '--out', out, *[f.format(work=work) for f in flags]) == 2
    assert message in _error_line(capsys) and not out.exists() and not list(work.glob('.*'))


@pytest.mark.parametrize('content, message', [
    (b'', 'is empty (0 bytes)'),
    (b'i\n', "is a text file (it starts with 'i')"),  # torch.load says KeyError: 105
    (b'PK\x03\x04 not really a zip', 'is not a readable PyTorch checkpoint (truncated or corrupt?)'),
])
def test_unreadable_checkpoints_are_one_line(work, published, capsys, content, message):
    bad, out = work / 'bad.pth.tar', work / 'from_unreadable'
    bad.write_bytes(content)
    assert _publish(bad, '--repo-id', REPO, '--out', out) == 2
    assert message in _error_line(capsys) and not out.exists()
    from hub.verify import main as verify
    assert verify([str(published), '--checkpoint', str(bad)]) == 2
    assert message in _error_line(capsys, 'python -m hub verify')


def test_out_is_only_ever_a_folder_this_command_wrote(work, published, checkpoint, capsys):
    afile = work / 'afile'
    afile.write_text('my notes')
    assert _publish(checkpoint, '--repo-id', REPO, '--out', afile, '--overwrite') == 2
    assert 'is a file: expected a folder' in _error_line(capsys) and afile.read_text() == 'my notes'
    mine = work / 'my_folder'
    mine.mkdir()
    (mine / 'thesis.tex').write_text('years of work')
    assert _publish(checkpoint, '--repo-id', REPO, '--out', mine, '--overwrite') == 2
    assert 'holds files that this command did not write (it has no .timm-nf-publish.json)' in _error_line(capsys)
    assert [p.name for p in mine.iterdir()] == ['thesis.tex']
    assert not list(work.glob('.*'))


def test_a_stale_backup_folder_does_not_block_overwrite(work, published, checkpoint):
    out = work / 'again'
    shutil.copytree(published, out)
    stale = work / '.again.old'  # left by an interrupted run of an earlier version
    stale.mkdir()
    (stale / 'config.json').write_text('{}')
    assert _publish(checkpoint, '--repo-id', REPO, '--out', out, '--overwrite') == 0
    assert (out / 'model.safetensors').is_file() and sorted(p.name for p in work.glob('.*')) == ['.again.old']
    shutil.rmtree(stale)



def test_overwrite_through_a_link_or_dot_replaces_the_folder_it_names(work, published, checkpoint, monkeypatch):
    real = work / 'real_out'
    shutil.copytree(published, real)
    link = work / 'link_out'
    link.symlink_to(real, target_is_directory=True)
    (real / 'model.safetensors').write_bytes(b'stale')
    assert _publish(checkpoint, '--repo-id', REPO, '--out', link, '--overwrite') == 0
    assert link.is_symlink() and (real / 'model.safetensors').read_bytes() != b'stale'
    (real / 'model.safetensors').write_bytes(b'stale')
    monkeypatch.chdir(real)
    assert _publish(checkpoint, '--repo-id', REPO, '--out', '.', '--overwrite') == 0
    assert (real / 'model.safetensors').read_bytes() != b'stale' and not list(work.glob('.*'))

def test_verify_bad_sources_are_one_line(work, checkpoint, capsys, monkeypatch):
    from hub.verify import main as verify
    for source, message in ((str(work / 'missing_folder'), 'is neither a folder nor a registered ARCH.TAG'),
                            (f'local-dir:{work / "missing_folder"}', 'not found: expected a folder written by'),
                            (f'{ARCH}.no_such_tag', f'Invalid pretrained tag (no_such_tag) for {ARCH}'),
                            (str(checkpoint.parent), 'has no config.json')):
        assert verify([source, '--checkpoint', str(checkpoint)]) == 2
        assert message in _error_line(capsys, 'python -m hub verify')
    import huggingface_hub.constants  # no network and nothing in the cache: huggingface_hub's offline mode
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(work / 'empty_hf_cache'))
    assert verify([f'hf-hub:{REPO}', '--checkpoint', str(checkpoint)]) == 2
    assert f'cannot download hf-hub:{REPO}' in _error_line(capsys, 'python -m hub verify')


# --- uploading: the token is checked first and never written ----------------------------------------------

class _FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers GET (whoami) only: an upload would need POSTs, which this server refuses."""
    status, body, requests = 200, {}, []

    def do_GET(self):  # noqa: N802
        type(self).requests.append(self.path)
        payload = json.dumps(self.body).encode()
        self.send_response(self.status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A whoami endpoint on 127.0.0.1, no stored token, and HfApi's create_repo/upload_folder recorded, not run."""
    import huggingface_hub.constants
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(huggingface_hub.constants, 'ENDPOINT', f'http://127.0.0.1:{server.server_port}')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_TOKEN_PATH', str(tmp_path / 'no_token'))
    monkeypatch.setattr(huggingface_hub.constants, 'HF_STORED_TOKENS_PATH', str(tmp_path / 'no_tokens'))
    monkeypatch.delenv('HF_TOKEN', raising=False)
    _FakeHub.requests = []
    uploads = []

    def upload_folder(self, repo_id, folder_path, commit_message, **kwargs):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        uploads.append(dict(repo_id=repo_id, files=files, message=commit_message))
        return argparse.Namespace(commit_url=f'https://hub.example/{repo_id}/commit/1')

    monkeypatch.setattr(hub.upload.HfApi, 'create_repo', lambda self, repo_id, **kw: repo_id)
    monkeypatch.setattr(hub.upload.HfApi, 'upload_folder', upload_folder)
    yield uploads
    server.shutdown()


def test_missing_token_stops_before_upload(fake_hub, checkpoint, registry, capsys):
    before = registry.read_text()
    assert _publish(checkpoint, '--repo-id', REPO, '--registry', registry) == 2
    assert 'no Hugging Face token' in capsys.readouterr().err
    assert fake_hub == [] and registry.read_text() == before


@pytest.mark.parametrize('status, body, expected', [
    (401, {'error': 'Invalid credentials'}, 'rejected the token (HTTP 401)'),
    (200, {'name': 'someone', 'orgs': [{'name': 'other'}]}, "cannot write to 'acme'")])
def test_unusable_token_stops_before_upload(fake_hub, monkeypatch, checkpoint, registry, status, body, expected,
                                            capsys):
    monkeypatch.setenv('HF_TOKEN', FAKE_TOKEN)
    monkeypatch.setattr(_FakeHub, 'status', status)
    monkeypatch.setattr(_FakeHub, 'body', body)
    before = registry.read_text()
    assert _publish(checkpoint, '--repo-id', REPO, '--registry', registry) == 2
    captured = capsys.readouterr()
    assert expected in captured.err and FAKE_TOKEN not in captured.out + captured.err
    assert '/api/whoami-v2' in _FakeHub.requests and fake_hub == [] and registry.read_text() == before


def test_no_network_is_one_line(fake_hub, monkeypatch, checkpoint, registry, capsys):
    import huggingface_hub.constants
    with socket.socket() as s:  # a port nothing listens on: the connection is refused at once
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(huggingface_hub.constants, 'ENDPOINT', f'http://127.0.0.1:{port}')
    monkeypatch.setenv('HF_TOKEN', FAKE_TOKEN)
    before = registry.read_text()
    assert _publish(checkpoint, '--repo-id', REPO, '--registry', registry) == 2
    line = _error_line(capsys)
    assert 'cannot reach the Hub to check the token' in line and FAKE_TOKEN not in line
    assert fake_hub == [] and registry.read_text() == before


def test_upload_is_one_commit_and_carries_no_token(fake_hub, monkeypatch, work, checkpoint, capsys):
    monkeypatch.setenv('HF_TOKEN', FAKE_TOKEN)
    monkeypatch.setattr(_FakeHub, 'status', 200)
    monkeypatch.setattr(_FakeHub, 'body', {'name': 'someone', 'orgs': [{'name': 'acme'}]})
    registry = work / 'registry_upload.json'
    shutil.copy(PUBLISHED_WEIGHTS_FILE, registry)
    assert _publish(checkpoint, '--repo-id', REPO, '--registry', registry) == 0
    assert len(fake_hub) == 1 and fake_hub[0]['repo_id'] == REPO
    files = fake_hub[0]['files']
    assert {'model.safetensors', 'config.json', 'README.md'} <= set(files) and 'pytorch_model.bin' not in files
    assert all(FAKE_TOKEN.encode() not in data for data in files.values())
    captured = capsys.readouterr()
    assert FAKE_TOKEN not in registry.read_text() and FAKE_TOKEN not in captured.out + captured.err
    assert any(e['tag'] == f'{ARCH}.test' for e in load_published(registry))  # registered after the upload


# --- the registry file and the MAC counter -----------------------------------------------------------------

def test_registry_writer_validates_and_replaces_in_place(tmp_path, monkeypatch):
    registry = tmp_path / 'published.json'
    shutil.copy(PUBLISHED_WEIGHTS_FILE, registry)
    entry = dict(tag=f'{ARCH}.x', pretrained_cfg=dict(hf_hub_id='acme/x'), metrics={}, provenance='test')
    assert upsert_published(entry, registry) is False
    assert upsert_published({**entry, 'provenance': 'again'}, registry) is True
    entries = load_published(registry)
    assert [e['tag'] for e in entries][-1] == f'{ARCH}.x' and entries[-1]['provenance'] == 'again'
    before = registry.read_text()
    with pytest.raises(ValueError, match='not PretrainedCfg fields'):
        upsert_published({**entry, 'pretrained_cfg': dict(hf_hub_id='acme/x', img_size=3)}, registry)
    with pytest.raises(ValueError, match='names no weights'):
        upsert_published({**entry, 'pretrained_cfg': dict(num_classes=3)}, registry)
    assert registry.read_text() == before

    def disk_full(src, dst):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(timm_nf._atomic.os, 'replace', disk_full)  # the write itself fails, after the temp file
    with pytest.raises(OSError, match='No space left'):
        upsert_published({**entry, 'provenance': 'lost'}, registry)
    assert registry.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['published.json']  # no temporary file left behind


@pytest.mark.parametrize('name', ['dm_nf_regnet_b0', 'nf_regnet_b0', 'dm_nf_resnet50', 'nf_resnet26'])
def test_macs_match_torch_flop_counter(name):
    kwargs = dict(depths=(1, 2, 1, 1), num_classes=7)
    params, macs = params_and_macs(name, [65, 97], **kwargs)
    model = timm.create_model(name, **kwargs).eval()
    assert params == sum(p.numel() for p in model.parameters())
    for size in (65, 97):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.randn(1, 3, size, size))
        assert macs[size] * 2 == counter.get_total_flops()
