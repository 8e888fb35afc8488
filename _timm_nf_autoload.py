"""Start-up hook installed by timm-nf: registers our models the moment any process finishes importing timm.

Loaded by timm_nf-autoload.pth at interpreter start. It only adds a finder to sys.meta_path and imports nothing
heavy, so a process that never imports timm pays nothing for it. TIMM_NF_AUTOLOAD=0 turns it off.
"""
import os
import sys


class _RegisterAfterTimm:
    """A meta-path finder for `timm` alone: it takes timm's spec from the finders after it and wraps the loader's
    exec_module, so that timm_nf is imported once timm's own code has run.

    Libraries probe for timm (importlib.util.find_spec, pkgutil.find_loader) without importing it; a probe gets a
    wrapped spec too but runs nothing, so the finder stays in place until timm's code actually runs, then leaves.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'timm':
            return None
        spec = self._spec_from_later_finders(fullname, path, target)
        loader = getattr(spec, 'loader', None)
        if loader is None or not hasattr(loader, 'exec_module'):
            return spec
        exec_module = loader.exec_module
        if getattr(exec_module, '_timm_nf_wrapper', False):  # a loader shared between specs, wrapped already
            return spec

        def exec_then_register(module):
            exec_module(module)
            try:
                del loader.exec_module  # back to the loader's own method
            except AttributeError:
                pass
            self._leave()
            try:
                import timm_nf  # noqa: F401
            except Exception as e:  # never break `import timm`
                import warnings
                reason = str(e) if type(e).__name__ == 'UnsupportedVersions' else (
                    f'could not register its models with timm ({type(e).__name__}: {e})')
                warnings.warn(f'timm-nf: {reason}; set TIMM_NF_AUTOLOAD=0 to silence this', RuntimeWarning,
                              stacklevel=2)

        exec_then_register._timm_nf_wrapper = True
        loader.exec_module = exec_then_register
        return spec

    def _spec_from_later_finders(self, fullname, path, target):
        """What the import system would find for `fullname` if this finder were not there."""
        finders = list(sys.meta_path)
        start = next((i + 1 for i, finder in enumerate(finders) if finder is self), 0)
        for finder in finders[start:]:
            find_spec = getattr(finder, 'find_spec', None)
            if find_spec is None or isinstance(finder, _RegisterAfterTimm):
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None

    def _leave(self):
        try:
            sys.meta_path.remove(self)
        except ValueError:  # already gone
            pass


def install() -> None:
    if os.environ.get('TIMM_NF_AUTOLOAD', '1').strip().lower() in ('0', 'false', 'no', 'off'):
        return
    if 'timm' in sys.modules:
        return
    if not any(isinstance(f, _RegisterAfterTimm) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterTimm())


install()
