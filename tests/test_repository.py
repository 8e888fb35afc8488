"""The repository points only at what its users have, and holds none of timm's scripts."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tracked():
    try:
        out = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('not a git checkout')
    return [ROOT / line for line in out.splitlines()]


def test_no_file_points_at_documents_users_do_not_have():
    pattern = re.compile(r'paper-spec\.md|anchors\.md|timm-integration\.md|\.\./shared')
    offenders = [str(p.relative_to(ROOT)) for p in _tracked()
                 if p.suffix in ('.py', '.md', '.yaml', '.toml', '.txt', '') and p.is_file()
                 and pattern.search(p.read_text(errors='ignore'))]
    assert offenders == []


def test_timm_scripts_are_never_copied_in():
    names = {'train.py', 'validate.py', 'benchmark.py', 'inference.py', 'distributed_train.sh'}
    assert [str(p.relative_to(ROOT)) for p in _tracked() if p.parent == ROOT and p.name in names] == []


def test_the_install_puts_only_timm_nf_on_the_path(tmp_path):
    """An (editable) install exposes the package alone: the maintainers' hub/ and validate/ are not importable from
    elsewhere (PyPI has a package named `hub`), while `python -m hub` still works from the checkout."""
    import os
    import sys
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    code = ('import importlib.util as u, json; '
            'print(json.dumps({n: getattr(u.find_spec(n), "origin", None) for n in ("timm_nf", "hub", "validate")}))')
    found = __import__('json').loads(subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                                                    capture_output=True, text=True, check=True).stdout)
    if found['timm_nf'] is None:
        pytest.skip('timm-nf is not installed in this environment')
    assert Path(found['timm_nf']).resolve().is_relative_to(ROOT / 'timm_nf') or 'site-packages' in found['timm_nf']
    for tool in ('hub', 'validate'):
        assert found[tool] is None or not Path(found[tool]).resolve().is_relative_to(ROOT), found
    run = subprocess.run([sys.executable, '-m', 'hub', '--help'], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and 'usage: python -m hub COMMAND' in run.stdout
