"""Writes validate/recipes/<variant>.yaml: the paper's ImageNet recipe as a timm train.py `-c` config, one per dm_ variant.

    python -m validate.make_recipes            # rewrite the committed files
    python -m validate.make_recipes --check    # exit 1 if a committed file differs from what this writes

The YAMLs are generated from the small tables below so that they cannot drift apart; tests/test_recipes.py checks that
the committed files equal this output. Sources, in DeepMind's reference code (github.com/deepmind/deepmind-research,
nfnets/): experiment.py, the base ImageNet experiment, for the NF-ResNets (DeepMind ships no NF-ResNet config, and the
paper's own NF-ResNet settings are not verified here), and experiment_nf_regnets.py for the NF-RegNets.
Train on 8 GPUs:  torchrun --nproc_per_node=8 train.py -c validate/recipes/dm_nf_regnet_b0.yaml --data-dir /imagenet
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from timm_nf._atomic import write_text_atomic
from timm_nf._command_line import check_output_dir, check_output_file, command_main
from timm_nf.models.variants import REGNET_LEVELS, RESNET_DEPTHS

RECIPES_DIR = Path(__file__).resolve().parent / 'recipes'
GLOBAL_BATCH = 1024
DEFAULT_GPUS = 8

# Per-GPU batch and gradient accumulation so that 8 GPUs make the global batch of 1024; bigger nets at bigger sizes
# accumulate. These splits are a guess at what fits 80 GB in fp32 (not measured); any split with
# batch_size × GPUs × grad_accum_steps = 1024 is the same recipe.
_PER_GPU = {'small': (128, 1), 'medium': (64, 2), 'large': (32, 4)}
_REGNET_SIZE_CLASS = {0: 'small', 1: 'small', 2: 'small', 3: 'small', 4: 'medium', 5: 'medium',
                      6: 'large', 7: 'large', 8: 'large'}
# [DM] experiment_nf_regnets.py: 5e-5 + 1e-5·level for B0-B5; it has no B6-B8 entries, so the rule is extended
# (third-party transcriptions of the paper's appendix give a smaller list: 2e-5, 2e-5, 3e-5, 4e-5, 4e-5, 5e-5).
_REGNET_WD = {level: round(5e-5 + 1e-5 * level, 6) for level in range(9)}


def _regnet_row(level: int) -> Dict:
    _, _, _, train_px, test_px, drop = REGNET_LEVELS[level]
    return dict(model=f'dm_nf_regnet_b{level}', family='regnet', epochs=360, weight_decay=_REGNET_WD[level],
                drop=drop, train_px=train_px, test_px=test_px, per_gpu=_PER_GPU[_REGNET_SIZE_CLASS[level]],
                wd_extended=level > 5)


def _resnet_row(depth: int) -> Dict:
    return dict(model=f'dm_nf_resnet{depth}', family='resnet', epochs=90, weight_decay=1e-4, drop=0.0,
                train_px=224, test_px=224, per_gpu=_PER_GPU['small' if depth <= 152 else 'medium'], wd_extended=False)


def recipe_rows() -> List[Dict]:
    return [_resnet_row(d) for d in RESNET_DEPTHS if d != 26] + [_regnet_row(level) for level in REGNET_LEVELS]


def _lines(row: Dict) -> List[Tuple[str, str]]:
    """(yaml line, comment) pairs for one variant; the comment says where train.py differs from the paper."""
    regnet = row['family'] == 'regnet'
    batch, accum = row['per_gpu']
    warmup = 5
    out = [
        ('device_modules: [timm_nf]', 'registers the NF models; the timm-nf start-up hook does too'),
        (f"model: {row['model']}", ''),
        (f"img_size: {row['train_px']}",
         f"train size; evaluate at the test size {row['test_px']} with crop {row['test_px']}/({row['test_px']}+32) "
         f"afterwards: validate.py (via `timm-nf run`) uses the model's test size, train.py evaluates at the train size"),
        ('train_interpolation: bicubic', 'the reference resizes bicubic'),
        ('scale: [0.08, 1.0]', 'Inception crop: area 0.08-1, aspect 3/4-4/3, plus horizontal flip'),
        ('ratio: [0.75, 1.3333333]', ''),
        ('hflip: 0.5', ''),
        ('color_jitter: 0.0', "the reference has no colour jitter (train.py's default is 0.4)"),
        (f'batch_size: {batch}',
         f'per GPU: global {GLOBAL_BATCH} = batch_size × GPUs × grad_accum_steps = {batch} × {DEFAULT_GPUS} × {accum}; '
         f'train.py has no global-batch option, so change these with the GPU count'),
        (f'grad_accum_steps: {accum}', ''),
        ('opt: sgd', "timm's 'sgd' is SGD with Nesterov momentum; weight decay is coupled (added to the gradient "
                     "before momentum) as in the reference"),
        ('momentum: 0.9', ''),
        ('lr: 0.4', 'set directly, so train.py does not rescale it by batch size: the paper value is for a global '
                    'batch of 1024'),
        (f"weight_decay: {row['weight_decay']:.1e}",
         ('DM rule 5e-5 + 1e-5·level extended past B5 (DM has no B6-B8 value); ' if row['wd_extended'] else '')
         + 'gains, SkipInit gains and biases are excluded through the model\'s no_weight_decay(), which '
           'create_optimizer_v2 reads (it also skips every 1-D parameter)'),
        ('sched: cosine', ''),
        ('sched_on_updates: true', 'the reference changes the LR every step, not every epoch'),
        (f'warmup_epochs: {warmup}', 'linear warm-up from 0'),
        ('warmup_lr: 0.0', ''),
        ('warmup_prefix: true', f"cosine over the epochs after warm-up; train.py then adds the warm-up to `epochs`, "
                                f"so epochs = {row['epochs']} - {warmup}"),
        (f"epochs: {row['epochs'] - warmup}", f"{row['epochs']} in total"),
        (f"min_lr: {0.001 if regnet else 0.0}", 'cosine ends at min_val=0.001' if regnet else 'cosine to 0'),
        ('cooldown_epochs: 0', ''),
        ('smoothing: 0.1', 'label smoothing'),
        (f"drop: {row['drop']}", 'dropout before the classifier; must be set: train.py always passes drop_rate '
                                 '(default 0) and so overrides the model default'
         + ('' if regnet else '; the paper\'s NF-ResNet dropout rate is not verified (DeepMind ships no NF-ResNet config)')),
        ('drop_path: 0.1', 'stochastic depth rate·i/N without 1/keep rescaling (the dm_ models implement the '
                           'paper form)'),
        ('amp: false', 'the reference trains in fp32; add --amp --amp-dtype bfloat16 for speed'),
    ]
    if regnet:
        out += [
            ('mixup: 0.2', 'Beta(0.2, 0.2) mixup'),
            ('cutmix: 1.0', 'cutmix alpha: not taken from the reference; 1.0 (uniform box area) is the usual value'),
            ('mixup_prob: 1.0', ''),
            ('mixup_mode: elem', 'the reference mixes one half of each batch and cutmixes the other; timm picks per '
                                 'image with probability 0.5 each, so the halves are equal only on average'),
            ('mixup_switch_prob: 0.5', ''),
            ('model_ema: true', 'EMA of the weights, evaluated alongside the raw weights as in the reference'),
            ('model_ema_decay: 0.99999', ''),
            ('model_ema_warmup: true', "the reference warms the decay up as min(d, (1+t)/(10+t)); timm's warm-up is "
                                       "1-(1+t)^(-2/3), similar in shape (0.990 vs 0.991 at step 1000)"),
        ]
    else:
        out += [('model_ema: false', "DeepMind's base experiment (the ResNet recipe) has no EMA and no mixup")]
    out += [(f"experiment: {row['model']}_paper", '')]
    return out


def render(row: Dict) -> str:
    family = "NF-RegNet (DeepMind's experiment_nf_regnets.py)" if row['family'] == 'regnet' else \
        "NF-ResNet (DeepMind's base experiment.py; the paper's own NF-ResNet recipe is not verified)"
    text = [f"# {row['model']}: the paper's ImageNet recipe, {family}, as a timm train.py config.",
            '# Generated by `python -m validate.make_recipes` from its tables: edit those, not this file.',
            f"# Usage: torchrun --nproc_per_node={DEFAULT_GPUS} train.py -c {row['model']}.yaml --data-dir /imagenet",
            '']
    for line, comment in _lines(row):
        text.append(f'{line}  # {comment}' if comment else line)
    return '\n'.join(text) + '\n'


def render_all() -> Dict[str, str]:
    return {f"{row['model']}.yaml": render(row) for row in recipe_rows()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--check', action='store_true', help='only compare with the committed files')
    parser.add_argument('--out-dir', type=Path, default=RECIPES_DIR, help='created if missing (its parent must exist)')


def _run(args: argparse.Namespace) -> int:
    files = render_all()
    if args.check:
        stale = [n for n, t in files.items() if not (args.out_dir / n).is_file() or (args.out_dir / n).read_text() != t]
        extra = sorted(p.name for p in args.out_dir.glob('*.yaml') if p.name not in files)
        for name in stale + extra:
            print(f'{args.out_dir / name}: differs from the generator', file=sys.stderr)
        return 1 if stale or extra else 0
    check_output_dir(args.out_dir, '--out-dir', may_create=True)
    for name in files if args.out_dir.is_dir() else ():
        check_output_file(str(args.out_dir / name), '--out-dir')
    args.out_dir.mkdir(exist_ok=True)
    for name, text in files.items():
        write_text_atomic(args.out_dir / name, text)
    print(f'wrote {len(files)} recipes to {args.out_dir}')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return command_main('python -m validate.make_recipes', __doc__.split('\n')[0], add_arguments, _run, argv)


if __name__ == '__main__':
    sys.exit(main())
