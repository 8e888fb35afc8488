"""Start-up hook installed by timm-nf: registers our models the moment any process finishes importing timm.

Loaded by timm_nf-autoload.pth at interpreter start. It only adds a finder to sys.meta_path and imports nothing
heavy, so a process that never imports timm pays nothing for it. TIMM_NF_AUTOLOAD=0 turns it off.
"""
import os
import sys


class _RegisterAfterTimm:
    """A meta-path finder that wraps timm's loader, then imports timm_nf once timm's own import has finished."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'timm':
            return None
        sys.meta_path.remove(self)  # one shot; also keeps the lookup below from finding ourselves
        try:
            import importlib.util
            spec = importlib.util.find_spec('timm')
        except Exception:
            return None
        if spec is None or spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            try:
                import timm_nf  # noqa: F401
            except Exception as e:  # never break `import timm`
                import warnings
                warnings.warn(f'timm-nf: could not register its models with timm ({type(e).__name__}: {e}); '
                              f'set TIMM_NF_AUTOLOAD=0 to silence this', RuntimeWarning, stacklevel=2)

        spec.loader.exec_module = exec_then_register
        return spec


def install() -> None:
    if os.environ.get('TIMM_NF_AUTOLOAD', '1').strip().lower() in ('0', 'false', 'no', 'off'):
        return
    if 'timm' in sys.modules:
        return
    if not any(isinstance(f, _RegisterAfterTimm) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterTimm())


install()
