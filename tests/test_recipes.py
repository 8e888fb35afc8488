"""The paper's recipes (validate/recipes/*.yaml): valid train.py configs, one per dm_ variant, matching the paper."""
from pathlib import Path

import pytest
import timm
import yaml
from timm.optim import create_optimizer_v2

from timm_nf import MODEL_CONFIGS
from timm_nf.models.variants import REGNET_LEVELS
from validate import make_recipes

RECIPES = Path(make_recipes.__file__).resolve().parent / 'recipes'

# train.py's option dests (`-c` YAML keys), read off the parser of a timm checkout (main, late 2026). Kept as data so
# that the test runs without timm's scripts; train.py applies a config with parser.set_defaults(**cfg), which accepts
# any key silently, so a misspelt key would otherwise just be ignored.
TRAIN_OPTIONS = frozenset('''
config data data_dir dataset train_split val_split train_num_samples val_num_samples dataset_download class_map
input_img_mode input_key target_key dataset_trust_remote_code model pretrained pretrained_path initial_checkpoint
resume no_resume_opt num_classes gp img_size in_chans input_size crop_pct mean std interpolation batch_size
validation_batch_size channels_last fuser grad_accum_steps grad_checkpointing fast_norm model_kwargs head_init_scale
head_init_bias torchcompile_mode torchscript torchcompile device amp amp_dtype model_dtype no_ddp_bb
synchronize_step local_rank device_modules opt opt_eps opt_betas momentum weight_decay clip_grad clip_mode
layer_decay layer_decay_min_scale layer_decay_no_opt_scale opt_kwargs sched sched_on_updates lr lr_base
lr_base_size lr_base_scale lr_noise lr_noise_pct lr_noise_std lr_cycle_mul lr_cycle_decay lr_cycle_limit
lr_k_decay warmup_lr min_lr epochs epoch_repeats start_epoch decay_milestones decay_epochs warmup_epochs
warmup_prefix cooldown_epochs patience_epochs decay_rate no_aug train_crop_mode scale ratio hflip vflip
color_jitter color_jitter_prob grayscale_prob gaussian_blur_prob aa aug_repeats aug_splits jsd_loss bce_loss
bce_sum bce_target_thresh bce_pos_weight reprob remode recount resplit mixup cutmix cutmix_minmax mixup_prob
mixup_switch_prob mixup_mode mixup_off_epoch smoothing train_interpolation drop drop_connect drop_path drop_block
bn_momentum bn_eps sync_bn dist_bn split_bn model_ema model_ema_force_cpu model_ema_decay model_ema_warmup seed
worker_seeding log_interval val_interval recovery_interval checkpoint_hist workers save_images pin_mem
no_prefetcher output experiment eval_metric tta use_multi_epochs_loader log_wandb wandb_project wandb_tags
wandb_resume_id
'''.split())
# options whose train.py type is float/int: YAML must give numbers (1e-4 without a dot would load as a string)
NUMERIC = {'lr', 'weight_decay', 'momentum', 'warmup_lr', 'min_lr', 'smoothing', 'drop', 'drop_path', 'mixup',
           'cutmix', 'mixup_prob', 'mixup_switch_prob', 'model_ema_decay', 'hflip', 'color_jitter', 'epochs',
           'warmup_epochs', 'cooldown_epochs', 'batch_size', 'grad_accum_steps', 'img_size'}
DM_VARIANTS = sorted(n for n in MODEL_CONFIGS if n.startswith('dm_'))


def _load(name: str) -> dict:
    return yaml.safe_load((RECIPES / f'{name}.yaml').read_text())


def test_one_recipe_per_dm_variant_and_files_match_the_generator():
    committed = {p.name: p.read_text() for p in RECIPES.glob('*.yaml')}
    assert sorted(committed) == [f'{n}.yaml' for n in DM_VARIANTS]
    generated = make_recipes.render_all()
    stale = sorted(n for n in generated if committed.get(n) != generated[n])
    assert not stale, f'{stale} differ from `python -m validate.make_recipes`: rerun it'


@pytest.mark.parametrize('name', DM_VARIANTS)
def test_recipe_parses_against_train_py_options(name):
    cfg = _load(name)
    unknown = sorted(set(cfg) - TRAIN_OPTIONS)
    assert not unknown, f'{name}.yaml: not train.py options: {unknown}'
    assert cfg['model'] == name and timm.is_model(name) and name in MODEL_CONFIGS
    assert cfg['device_modules'] == ['timm_nf']
    for key in NUMERIC & set(cfg):
        assert isinstance(cfg[key], (int, float)) and not isinstance(cfg[key], bool), f'{name}: {key}={cfg[key]!r}'


@pytest.mark.parametrize('name', DM_VARIANTS)
def test_recipe_has_the_paper_values(name):
    cfg = _load(name)
    regnet = 'regnet' in name
    assert cfg['batch_size'] * make_recipes.DEFAULT_GPUS * cfg['grad_accum_steps'] == 1024
    assert (cfg['opt'], cfg['momentum'], cfg['lr'], cfg['smoothing']) == ('sgd', 0.9, 0.4, 0.1)
    assert (cfg['sched'], cfg['warmup_epochs'], cfg['warmup_lr'], cfg['warmup_prefix']) == ('cosine', 5, 0.0, True)
    assert cfg['epochs'] + cfg['warmup_epochs'] == (360 if regnet else 90)
    assert cfg['drop'] == MODEL_CONFIGS[name].drop_rate and cfg['drop_path'] == 0.1
    data_cfg = timm.models.get_pretrained_cfg(name)
    assert cfg['img_size'] == data_cfg.input_size[-1]
    if regnet:
        level = int(name[-1])
        assert cfg['img_size'] == REGNET_LEVELS[level][3]
        assert cfg['weight_decay'] == pytest.approx(5e-5 + 1e-5 * level)
        assert (cfg['model_ema'], cfg['model_ema_decay'], cfg['mixup'], cfg['min_lr']) == (True, 0.99999, 0.2, 0.001)
    else:
        assert (cfg['weight_decay'], cfg['model_ema'], cfg['img_size']) == (1e-4, False, 224)


def test_optimizer_from_the_recipe_excludes_gains_and_biases_from_weight_decay():
    """What the recipes' weight-decay comment promises: create_optimizer_v2 (as train.py calls it) leaves WS gains,
    SkipInit gains and biases undecayed and decays every conv/linear weight."""
    cfg = _load('dm_nf_regnet_b0')
    model = timm.create_model('dm_nf_regnet_b0', depths=(1, 1, 1, 1))
    optimizer = create_optimizer_v2(model, opt=cfg['opt'], lr=cfg['lr'], momentum=cfg['momentum'],
                                    weight_decay=cfg['weight_decay'])
    decay_of = {id(p): g['weight_decay'] for g in optimizer.param_groups for p in g['params']}
    assert optimizer.defaults.get('nesterov') is True
    for name, p in model.named_parameters():
        excluded = name.endswith(('.gain', '.bias', 'skipinit_gain'))
        assert decay_of[id(p)] == (0.0 if excluded else cfg['weight_decay']), name
    assert any(n.endswith('skipinit_gain') for n, _ in model.named_parameters())
