"""Supported timm/torch versions: the check timm_nf runs before registering, and the floors pyproject.toml declares."""
from pathlib import Path

import pytest

from timm_nf import _versions

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize('version, numbers', [
    ('1.0.22', (1, 0, 22)), ('1.0.32.dev0', (1, 0, 32)), ('2.14.1+cu130', (2, 14, 1)), ('2.5.0a0+git1234', (2, 5, 0)),
    ('2.10', (2, 10)), ('garbage', ()),
])
def test_release_numbers(version, numbers):
    assert _versions.release(version) == numbers


def test_supported_and_unsupported_pairs():
    assert _versions.unsupported('1.0.21', '2.5.0') is None
    assert _versions.unsupported('1.0.31', '2.14.1+cpu') is None
    assert _versions.unsupported('1.1.0', '2.10.0') is None  # 2.10 > 2.5: numbers, not strings
    message = _versions.unsupported('1.0.20', '2.14.1')
    assert message.startswith('timm-nf supports timm >= 1.0.21 with torch >= 2.5, found timm 1.0.20 with torch 2.14.1')
    assert 'found timm 1.0.31 with torch 2.4.1' in _versions.unsupported('1.0.31', '2.4.1')


def test_pyproject_declares_the_same_floors():
    text = (ROOT / 'pyproject.toml').read_text()
    assert f'"timm>={_versions.TIMM_FLOOR}"' in text
    assert f'"torch>={_versions.TORCH_FLOOR}"' in text
