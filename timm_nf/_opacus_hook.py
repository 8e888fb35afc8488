"""Register the Opacus grad samplers (privacy.py) as soon as opacus is imported, without importing it ourselves.

The start-up hook's finder (_timm_nf_autoload.py, installed with the package) runs the registration once opacus's
own code has run, or at once if opacus is imported already; `import timm` never pays for opacus.
"""
import sys
import warnings


def _register() -> None:
    try:
        from .privacy import register
        register()
    except Exception as e:  # never break `import opacus`
        warnings.warn(f'timm-nf: could not register its per-example gradient samplers with opacus '
                      f'({type(e).__name__}: {e}); private training of its models may fail', RuntimeWarning,
                      stacklevel=2)


def register_with_opacus_when_imported() -> None:
    try:
        from _timm_nf_autoload import run_after_import
    except ImportError:  # the package without its start-up hook (a copied source tree): register if opacus is here
        if 'opacus' in sys.modules:
            _register()
        return
    run_after_import('opacus', _register)
