"""Hub names: a repo id `ORG/ARCH.TAG` is checked before anything is built, written or uploaded."""
import re
from typing import NamedTuple, Optional

from huggingface_hub.utils import HFValidationError, validate_repo_id

from timm_nf._command_line import UsageError
from timm_nf.models.variants import MODEL_CONFIGS

# timm splits 'arch.tag' at the first dot, so a tag holds no dots; '-' and '_' are fine for both timm and the Hub
_TAG = re.compile(r'^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$')


class RepoName(NamedTuple):
    org: str
    arch: str
    tag: str

    @property
    def repo_id(self) -> str:
        return f'{self.org}/{self.arch}.{self.tag}'

    @property
    def model_tag(self) -> str:
        return f'{self.arch}.{self.tag}'


def check_tag(tag: str) -> str:
    if not _TAG.match(tag or ''):
        raise UsageError(f'tag {tag!r} is not valid: expected letters, digits, "_" or "-" (no dots, as timm splits '
                         f'"arch.tag" at the first dot), e.g. "ra2_in1k"')
    return tag


def parse_repo_id(repo_id: str, arch: Optional[str] = None) -> RepoName:
    """ORG/ARCH.TAG → RepoName; UsageError (a ValueError) for anything the Hub (huggingface_hub's own rules) or timm would reject."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise UsageError(f'repo id {repo_id!r} would be rejected by the Hub: {e}') from None
    org, slash, name = repo_id.partition('/')
    if not slash:
        raise UsageError(f'repo id {repo_id!r} needs an organisation or user: expected ORG/ARCH.TAG')
    name_arch, dot, tag = name.partition('.')
    if not dot:
        raise UsageError(f'repo name {name!r} must be ARCH.TAG (e.g. dm_nf_regnet_b1.my_in1k), so that timm finds '
                         f'the architecture and the tag')
    if name_arch not in MODEL_CONFIGS:
        raise UsageError(f'repo name {name!r} starts with {name_arch!r}, which is not a timm-nf model; '
                         f'expected one of {sorted(MODEL_CONFIGS)}')
    if arch is not None and arch != name_arch:
        raise UsageError(f'repo name {name!r} names architecture {name_arch!r} but the weights are {arch!r}')
    return RepoName(org, name_arch, check_tag(tag))
