"""pytest plugin: keep only the tests of timm's own test_models.py that are parametrised with one of our models.

timm's suite parametrises every test over `timm.list_models(...)`, about 1,300 architectures; CI can afford a few of
ours. Used as `pytest -p timm_suite_select --timm-nf-models A,B --timm-nf-meta-models C` with this folder on
PYTHONPATH. Tests without a `model_name` parameter (those on hand-picked timm models) and the two that download weights
are dropped.
"""
import pytest

# these download published weights; CI has no network
NETWORK_TESTS = ('test_model_load_pretrained', 'test_model_features_pretrained')


def pytest_addoption(parser):
    group = parser.getgroup('timm-nf')
    group.addoption('--timm-nf-models', default='',
                    help='comma-separated architectures to keep in every test')
    group.addoption('--timm-nf-meta-models', default='',
                    help='comma-separated architectures kept only in test_model_default_cfgs, which builds its '
                         'models on the meta device (cheap for deep variants)')


def pytest_configure(config):
    # timm's suite marks tests with pytest-timeout's marker; CI does not need that plugin, only the name
    config.addinivalue_line('markers', 'timeout(seconds): pytest-timeout limit, unused here')


def _names(option: str) -> set:
    return {n.strip() for n in option.split(',') if n.strip()}


def pytest_collection_modifyitems(config, items):
    everywhere = _names(config.getoption('--timm-nf-models'))
    meta_only = _names(config.getoption('--timm-nf-meta-models'))
    if not everywhere | meta_only:
        raise pytest.UsageError('timm_suite_select: give --timm-nf-models and/or --timm-nf-meta-models')
    import timm
    unknown = sorted(n for n in everywhere | meta_only if not timm.is_model(n))
    if unknown:
        raise pytest.UsageError(f'timm_suite_select: not registered with timm: {unknown}')

    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, 'callspec', None), 'params', {})
        arch = str(params.get('model_name', '')).split('.')[0]  # cfg tests run on tags: 'nf_resnet50.ra2_in1k'
        meta_test = item.originalname in ('test_model_default_cfgs', 'test_model_default_cfgs_non_std')
        keep = item.originalname not in NETWORK_TESTS and (arch in everywhere or (meta_test and arch in meta_only))
        (kept if keep else dropped).append(item)
    config.hook.pytest_deselected(items=dropped)
    items[:] = kept
