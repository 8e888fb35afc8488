"""The start-up hook: installed models are visible to any process that imports timm, without importing timm_nf.

Every test runs a fresh interpreter, since the hook acts once per process, at its first `import timm`.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

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
REGISTERED = ['True', '14', 'timm_nf.models.nfnet']


def test_installed_hook_is_this_checkouts():
    # an editable install copies the hook into site-packages: after editing it, `pip install -e .` again
    import _timm_nf_autoload
    repo_hook = Path(__file__).parents[1] / '_timm_nf_autoload.py'
    assert Path(_timm_nf_autoload.__file__).read_text() == repo_hook.read_text(), (
        f'{_timm_nf_autoload.__file__} is stale: run pip install -e . again')


def test_importing_timm_registers_our_models_and_the_hook_leaves(tmp_path):
    out = _python(CHECK + '\nprint(sorted(f.name for f in sys.meta_path if type(f).__name__ == "_RunAfterImport"), '
                  '"exec_module" in vars(timm.__spec__.loader), "opacus" in sys.modules)', tmp_path)
    assert out.returncode == 0, out.stderr
    # registered; then timm's finder is gone and timm's loader has its own exec_module back; only the finder that
    # registers the Opacus samplers waits, for an opacus that nothing has imported
    assert out.stdout.split() == REGISTERED + ["['opacus']", 'False', 'False']


def test_autoload_can_be_turned_off(tmp_path):
    out = _python(CHECK, tmp_path, TIMM_NF_AUTOLOAD='0')
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['False', '0', 'timm.models.nfnet']


# how libraries look for an optional timm before (or instead of) importing it
PROBES = '''
import importlib.metadata, importlib.util, pkgutil, warnings
assert importlib.util.find_spec("timm") is not None
assert importlib.metadata.version("timm")
assert any(m.name == "timm" for m in pkgutil.iter_modules())
if hasattr(pkgutil, "find_loader"):  # deprecated, gone in Python 3.14, still used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert pkgutil.find_loader("timm") is not None
assert importlib.util.find_spec("timm") is not None
'''


def test_probes_import_nothing_and_a_later_import_registers(tmp_path):
    code = (PROBES + 'import sys\n'
            'print(sorted(m for m in ("timm", "timm_nf", "torch") if m in sys.modules))\n'
            'import timm.models  # a submodule first, as `from timm.models import ...` does\n'
            'print(sys.modules["timm"].is_model("dm_nf_resnet50"), "timm_nf" in sys.modules)')
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['[]', 'True True']


def test_import_in_a_thread(tmp_path):
    code = ('import threading\n'
            'seen = []\n'
            'def work():\n'
            '    import timm\n'
            '    seen.append(timm.is_model("dm_nf_regnet_b0"))\n'
            'threads = [threading.Thread(target=work) for _ in range(2)]\n'
            '[t.start() for t in threads]; [t.join() for t in threads]\n'
            'print(seen)')
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[True, True]'


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


def test_unsupported_timm_warns_once_registers_nothing_and_leaves_timm_working(tmp_path):
    # timm/__init__.py reads its version from timm.version: a stand-in module makes this timm look like 1.0.20
    code = ('import sys, types\n'
            'fake = types.ModuleType("timm.version"); fake.__version__ = "1.0.20"; sys.modules["timm.version"] = fake\n'
            'import timm, timm.models, torch\n'
            'model = timm.create_model("nf_resnet50", num_classes=3)\n'
            'print(timm.is_model("dm_nf_resnet50"), type(model).__module__, model(torch.randn(1, 3, 64, 64)).shape[1])\n'
            'try:\n'
            '    import timm_nf\n'
            'except ImportError as e:\n'
            '    print("explicit import:", type(e).__name__)\n')
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['False timm.models.nfnet 3', 'explicit import: UnsupportedVersions']
    assert out.stderr.count('timm-nf supports timm >= 1.0.21 with torch >= 2.5, found timm 1.0.20 with torch') == 1
