"""Published weights for the commands (`fuse --pretrained`, `spp --pretrained`, `hub verify`): one clear line when
they cannot be had, and quickly.

Offline, huggingface_hub retries every request with back-off for most of a minute before it gives up; here the Hub's
endpoint is asked once, with a short timeout, and when it does not answer huggingface_hub runs in offline mode for
the download: weights in the local cache load at once, others fail at once. A model name whose tag has no weights is
refused instead of timm's warning and random weights.
"""
import contextlib
import importlib
from typing import Iterator, Optional, Tuple

from safetensors import SafetensorError
from torch import nn

from ._arguments import first_line
from ._command_line import UsageError

PROBE_TIMEOUT_S = 3.0


def network_errors() -> Tuple[type, ...]:
    """What huggingface_hub raises when the Hub cannot be reached: the HTTP client's transport errors, and OSError
    (requests' errors before huggingface_hub 1.0, OfflineModeIsEnabled, 'not in the local cache', HTTP errors)."""
    errors = [OSError]
    for http_client in ('httpx', 'httpx2'):  # huggingface_hub 1.x uses httpx, 2.x its fork httpx2
        try:
            errors.append(importlib.import_module(http_client).TransportError)
        except ImportError:
            pass
    return tuple(errors)


def _unreachable_reason(timeout: float = PROBE_TIMEOUT_S) -> Optional[str]:
    """Why the Hub's endpoint does not answer (any HTTP answer counts as an answer), or None."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except network_errors() as e:
        return f'{constants.ENDPOINT} cannot be reached ({first_line(e)})'
    return None


@contextlib.contextmanager
def hub_or_cache(timeout: float = PROBE_TIMEOUT_S) -> Iterator[Optional[str]]:
    """huggingface_hub in offline mode for the duration when the Hub does not answer; yields why, or None."""
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        yield 'huggingface_hub is in offline mode (HF_HUB_OFFLINE)'
        return
    reason = _unreachable_reason(timeout)
    if reason is None:
        yield None
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield reason
    finally:
        constants.HF_HUB_OFFLINE = False


def check_has_weights(name: str) -> None:
    """UsageError unless the registered `name` ('arch' or 'arch.tag') names published weights."""
    import timm
    from timm.models import get_pretrained_cfg
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError as e:  # "Invalid pretrained tag (x) for arch"
        raise UsageError(f'{name}: {first_line(e)}') from None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        arch = name.split('.', 1)[0]
        tags = timm.list_models(arch, pretrained=True)
        raise UsageError(f'{name} has no published weights' + (
            f': expected one of {", ".join(tags)}' if tags else
            ' (timm would use random ones): train them, or name a model that has some (`timm.list_models(pretrained=True)`)'))


def create_pretrained(name: str, **kwargs) -> nn.Module:
    """timm.create_model(name, pretrained=True, **kwargs); UsageError in one line when the weights cannot be had."""
    import timm
    if not name.startswith(('hf-hub:', 'local-dir:')):
        check_has_weights(name)
    with hub_or_cache() as offline:
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except network_errors() as e:
            why = f'{offline}, and they are not in the local cache' if offline else first_line(e)[:200]
            raise UsageError(f'cannot download the weights of {name}: {why}') from None
        except (RuntimeError, SafetensorError) as e:  # a file that is not these weights: corrupt, or another model's
            raise UsageError(f'cannot load the published weights of {name}: {first_line(e)[:200]}') from None
