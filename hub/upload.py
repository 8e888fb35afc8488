"""Upload a built repo folder to the Hub in one commit, after checking the token can write there.

The token comes from huggingface_hub's usual places (HF_TOKEN, then `hf auth login`'s file); it is only ever
passed to huggingface_hub, never written anywhere.
"""
from pathlib import Path
from typing import Optional

from huggingface_hub import CommitInfo, HfApi
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

from timm_nf._arguments import first_line
from timm_nf._command_line import UsageError
from timm_nf._download import network_errors

from .names import RepoName


class UploadError(UsageError):
    """The upload cannot happen: no token, a rejected token, no network, or no right to write to the namespace."""


def check_token(repo: RepoName, token: Optional[str] = None) -> str:
    """The user name the token belongs to; UploadError before anything is uploaded if it cannot write to repo.org."""
    try:
        info = HfApi(token=token).whoami()
    except LocalTokenNotFoundError:
        raise UploadError('no Hugging Face token found: set HF_TOKEN or run `hf auth login` before uploading '
                          '(nothing was uploaded; use --out DIR to build the folder without uploading)') from None
    except HfHubHTTPError as e:
        status = getattr(e.response, 'status_code', None)
        raise UploadError(f'the Hub rejected the token (HTTP {status}): {first_line(e)} '
                          f'(nothing was uploaded)') from None
    except network_errors() as e:
        raise UploadError(f'cannot reach the Hub to check the token: {first_line(e)} (nothing was built or '
                          f'uploaded; use --out DIR to build the folder offline)') from None
    namespaces = {info.get('name')} | {org.get('name') for org in info.get('orgs', [])}
    if repo.org not in namespaces:
        raise UploadError(f'the token belongs to {info.get("name")!r}, who cannot write to {repo.org!r} '
                          f'(namespaces: {sorted(n for n in namespaces if n)}; nothing was uploaded)')
    return info['name']


def upload(folder: Path, repo: RepoName, token: Optional[str] = None, private: bool = False,
           commit_message: Optional[str] = None) -> CommitInfo:
    """One commit; UploadError if the network or the Hub fails on the way (the upload is then not committed)."""
    api = HfApi(token=token, library_name='timm')
    try:
        api.create_repo(repo.repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder),
                                 commit_message=commit_message or f'Add {repo.model_tag} (timm-nf)')
    except (HfHubHTTPError,) + network_errors() as e:
        raise UploadError(f'the upload to {repo.repo_id} failed: {first_line(e)} (nothing was committed; the '
                          f'registry was not changed)') from None
