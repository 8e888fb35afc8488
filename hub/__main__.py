"""python -m hub publish|verify|card ...: dispatch to the command's main(argv) -> exit status."""
import importlib
import sys

_COMMANDS = {'publish': 'hub.publish', 'verify': 'hub.verify', 'card': 'hub.model_card'}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in _COMMANDS:
        print(f'usage: python -m hub {{{",".join(_COMMANDS)}}} ...\n' + (sys.modules['hub'].__doc__ or ''))
        return 0 if argv and argv[0] in ('-h', '--help') else 2
    import timm_nf  # noqa: F401  registers the models, whatever the autoload hook's setting
    return importlib.import_module(_COMMANDS[argv[0]]).main(argv[1:])


if __name__ == '__main__':
    sys.exit(main())
