"""Maintainers' tooling for publishing timm-nf weights on the Hugging Face Hub.

    python -m hub publish CHECKPOINT --repo-id ORG/ARCH.TAG [--out DIR]   build (and upload) a Hub repo
    python -m hub verify SOURCE --checkpoint CHECKPOINT                   check it loads back identically
    python -m hub card [--check]                                          (re)generate MODEL_CARD.md
"""
