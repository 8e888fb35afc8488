"""Start-up hook installed by timm-nf: registers our models the moment any process finishes importing timm.

Loaded by timm_nf-autoload.pth at interpreter start. It only adds a finder to sys.meta_path and imports nothing
heavy, so a process that never imports timm pays nothing for it. TIMM_NF_AUTOLOAD=0 turns it off.
timm_nf uses the same finder (`run_after_import`) to register its Opacus samplers once opacus is imported.
"""
import os
import sys


class _RunAfterImport:
    """A meta-path finder for one module name: it takes that module's spec from the finders after it and wraps the
    loader's exec_module, so that `action` runs once the module's own code has run.

    Libraries probe for a module (importlib.util.find_spec, pkgutil.find_loader) without importing it; a probe gets a
    wrapped spec too but runs nothing, so the finder stays in place until the module's code actually runs, then
    leaves.
    """

    def __init__(self, name, action):
        self.name = name
        self.action = action

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        spec = self._spec_from_later_finders(fullname, path, target)
        loader = getattr(spec, 'loader', None)
        if loader is None or not hasattr(loader, 'exec_module'):
            return spec
        exec_module = loader.exec_module
        if getattr(exec_module, '_timm_nf_wrapper', False):  # a loader shared between specs, wrapped already
            return spec

        def exec_then_act(module):
            exec_module(module)
            try:
                del loader.exec_module  # back to the loader's own method
            except AttributeError:
                pass
            self._leave()
            self.action()

        exec_then_act._timm_nf_wrapper = True
        loader.exec_module = exec_then_act
        return spec

    def _spec_from_later_finders(self, fullname, path, target):
        """What the import system would find for `fullname` if this finder were not there."""
        finders = list(sys.meta_path)
        start = next((i + 1 for i, finder in enumerate(finders) if finder is self), 0)
        for finder in finders[start:]:
            find_spec = getattr(finder, 'find_spec', None)
            if find_spec is None or isinstance(finder, _RunAfterImport):
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


def run_after_import(name, action):
    """Run `action()` now if module `name` is imported already, else once its code has run (at most once)."""
    if name in sys.modules:
        action()
    elif not any(isinstance(f, _RunAfterImport) and f.name == name and f.action is action for f in sys.meta_path):
        sys.meta_path.insert(0, _RunAfterImport(name, action))


def _register_models():
    try:
        import timm_nf  # noqa: F401
    except Exception as e:  # never break `import timm`
        import warnings
        reason = str(e) if type(e).__name__ == 'UnsupportedVersions' else (
            f'could not register its models with timm ({type(e).__name__}: {e})')
        warnings.warn(f'timm-nf: {reason}; set TIMM_NF_AUTOLOAD=0 to silence this', RuntimeWarning, stacklevel=3)


def install() -> None:
    if os.environ.get('TIMM_NF_AUTOLOAD', '1').strip().lower() in ('0', 'false', 'no', 'off'):
        return
    if 'timm' not in sys.modules:
        run_after_import('timm', _register_models)


install()
