"""`python -m hub publish|verify|card ...`: the maintainers' commands, in timm-nf's command-line convention."""
import sys

from timm_nf._command_line import dispatch  # importing timm_nf registers the models, whatever the hook's setting

COMMANDS = {
    'publish': ('hub.publish', 'a train.py checkpoint -> a Hub repo folder (model.safetensors, config.json, '
                               'README.md), uploaded unless --out'),
    'verify': ('hub.verify', 'load published weights as a user would and compare them with the checkpoint'),
    'card': ('hub.model_card', '(re)generate MODEL_CARD.md from the registry data'),
}


def main(argv=None) -> int:
    return dispatch('python -m hub', COMMANDS, argv, 'Publishing timm-nf weights on the Hugging Face Hub.')


if __name__ == '__main__':
    sys.exit(main())
