"""The start-up hook: installed models are visible to any process that imports timm, without importing timm_nf."""
import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec('_timm_nf_autoload') is None,
    reason='timm-nf is not installed (pip install -e .), so its start-up hook is not either')


def _python(code: str, cwd, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != 'TIMM_NF_AUTOLOAD'}
    environ.update(env)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=cwd, env=environ,
                          timeout=300)


CHECK = ('import sys, timm; print("timm_nf" in sys.modules, len(timm.list_models("dm_nf_*")), '
         'timm.models.model_entrypoint("nf_regnet_b1").__module__)')


def test_importing_timm_registers_our_models(tmp_path):
    out = _python(CHECK, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['True', '14', 'timm_nf.models.nfnet']


def test_autoload_can_be_turned_off(tmp_path):
    out = _python(CHECK, tmp_path, TIMM_NF_AUTOLOAD='0')
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['False', '0', 'timm.models.nfnet']


def test_nothing_heavy_is_imported_without_timm(tmp_path):
    out = _python('import sys; print(sorted(m for m in ("torch", "timm", "timm_nf") if m in sys.modules))', tmp_path)
    assert out.stdout.strip() == '[]'
    times = _python('pass', tmp_path, PYTHONPROFILEIMPORTTIME='1').stderr
    hook = [line for line in times.splitlines() if line.rstrip().endswith('_timm_nf_autoload')]
    assert hook, times[-500:]
    assert int(hook[0].split('|')[1]) < 20_000  # cumulative import time in µs (about 0.2 ms when measured)


def test_a_failing_registration_warns_and_never_breaks_import_timm(tmp_path):
    broken = tmp_path / 'shadow' / 'timm_nf'
    broken.mkdir(parents=True)
    (broken / '__init__.py').write_text('raise ImportError("simulated breakage")\n')
    out = _python('import timm; print(timm.__version__)', tmp_path, PYTHONPATH=str(broken.parent))
    assert out.returncode == 0 and out.stdout.strip()
    assert 'timm-nf: could not register its models with timm (ImportError: simulated breakage)' in out.stderr
