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
