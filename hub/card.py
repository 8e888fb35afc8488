"""The Hub model card (README.md of a published repo): YAML front matter, then model, recipe, results, SPP, usage.

The front matter is written by huggingface_hub's ModelCardData (it also writes the model-index for results);
timm's generate_readme is not used because it has no metrics or results and tags every model 'transformers'.
"""
from typing import Any, Dict, List, Optional

from huggingface_hub import EvalResult, ModelCardData

from timm_nf.checkpoint import TrainCheckpoint
from timm_nf.models.variants import MODEL_CONFIGS

from .describe import CITATION, PAPER_URL, arch_summary, billions, family, millions
from .names import RepoName

# train.py arguments worth repeating in a card, in the order a reader wants them
_RECIPE_ARGS = ('dataset', 'epochs', 'batch_size', 'grad_accum_steps', 'opt', 'lr', 'momentum', 'weight_decay',
                'sched', 'warmup_epochs', 'warmup_lr', 'min_lr', 'clip_grad', 'clip_mode', 'model_ema',
                'model_ema_decay', 'smoothing', 'drop', 'drop_path', 'aa', 'reprob', 'mixup', 'cutmix',
                'img_size', 'input_size', 'crop_pct', 'amp', 'amp_dtype', 'seed', 'model_kwargs')


def _recipe_rows(checkpoint: TrainCheckpoint) -> List[str]:
    args = checkpoint.train_args
    rows = [f'| {k} | `{args[k]}` |' for k in _RECIPE_ARGS if args.get(k)]  # unset, off or empty: not shown
    if checkpoint.epoch is not None:
        rows.append(f'| checkpoint epoch | {checkpoint.epoch} |')
    if checkpoint.metric is not None:
        rows.append(f'| checkpoint eval metric | {checkpoint.metric:.3f} |')
    rows.append(f'| weights | `{checkpoint.weights}` of `{checkpoint.path.name}` |')
    return rows


def _eval_results(rows: List[Dict[str, str]], dataset: Optional[str]) -> List[EvalResult]:
    results = []
    for row in rows:
        for metric in ('top1', 'top5'):
            if row.get(metric):
                size = f' @ {row["img_size"]} px' if row.get('img_size') else ''
                results.append(EvalResult(
                    task_type='image-classification', dataset_type=row.get('dataset') or dataset or 'unknown',
                    dataset_name=row.get('dataset') or dataset or 'unknown', dataset_split='validation',
                    metric_type='accuracy', metric_value=float(row[metric]),
                    metric_name=f'{metric[:3]}-{metric[3:]} accuracy{size}'))
    return results


def _results_section(rows: List[Dict[str, str]]) -> List[str]:
    if not rows:
        return ['No validation results were given when this repository was published.']
    lines = ['| model | img size | crop | top-1 | top-5 | source |', '|---|---|---|---|---|---|']
    lines += [f'| {r["model"]} | {r.get("img_size", "")} | {r.get("crop_pct", "")} | {r["top1"]} | '
              f'{r.get("top5", "")} | {r["source"]} |' for r in rows]
    return lines


def hub_readme(repo: RepoName, checkpoint: TrainCheckpoint, config: Dict[str, Any], params: int,
               macs: Dict[str, int], sizes: Dict[str, int], results: List[Dict[str, str]],
               dataset: Optional[str], spp_figure: Optional[str]) -> str:
    """README.md text. `macs`/`sizes` are keyed 'train'/'test'; `spp_figure` is a file name inside the repo."""
    arch = repo.arch
    card = ModelCardData(
        library_name='timm', license=config['pretrained_cfg'].get('license', 'apache-2.0'),
        tags=['image-classification', 'timm', 'timm-nf', 'normalizer-free'],
        datasets=[dataset] if dataset else None, metrics=['accuracy'], pipeline_tag='image-classification',
        model_name=repo.model_tag, eval_results=_eval_results(results, dataset) or None)
    pcfg = config['pretrained_cfg']
    lines = [
        '---', card.to_yaml(), '---',
        f'# Model card for {repo.model_tag}', '',
        f'A normalizer-free {"RegNet" if "regnet" in arch else "ResNet"} ({family(arch)} family of '
        f'timm-nf, after Brock, De & Smith, ICLR 2021, [{PAPER_URL}]({PAPER_URL})): '
        'no batch normalisation; weight-standardised convolutions and scaled residual branches keep the signal '
        'well behaved instead.', '',
        '## Model details', '',
        f'- **Architecture:** `{arch}`: {arch_summary(MODEL_CONFIGS[arch])}',
        f'- **Model args:** `{config.get("model_args", {})}`',
        f'- **Params (M):** {millions(params)}',
    ]
    lines += [f'- **GMACs @ {sizes[k]} px ({k}):** {billions(macs[k])}' for k in ('train', 'test')
              if k == 'train' or sizes['test'] != sizes['train']]
    lines += [
        f'- **Image size:** train {sizes["train"]}, test {sizes["test"]}; crop {pcfg.get("crop_pct")}, '
        f'{pcfg.get("interpolation")} interpolation, mean {pcfg.get("mean")}, std {pcfg.get("std")}',
        f'- **Classes:** {config["num_classes"]}',
        f'- **Dataset:** {dataset or "not recorded"}', '',
        '## Training recipe', '',
        "Trained with timm's `train.py` (`--device-modules timm_nf`). From the checkpoint's arguments:", '',
        '| argument | value |', '|---|---|', *_recipe_rows(checkpoint), '',
        '## Validation results', '', *_results_section(results), '',
    ]
    if spp_figure:
        lines += ['## Signal propagation', '',
                  f'Signal propagation at initialisation, from timm-nf\'s SPP study (`{spp_figure}`): average '
                  'channel squared mean, average channel variance and residual-branch variance per block.', '',
                  f'![signal propagation plot]({spp_figure})', '']
    lines += [
        '## Usage', '',
        '```python',
        'import timm, timm_nf  # timm_nf registers the architecture with timm',
        'import torch',
        '',
        f"model = timm.create_model('hf-hub:{repo.repo_id}', pretrained=True).eval()",
        f"# once timm-nf lists this tag: timm.create_model('{repo.model_tag}', pretrained=True)",
        'config = timm.data.resolve_data_config({}, model=model)',
        'transform = timm.data.create_transform(**config)',
        'with torch.no_grad():',
        '    probabilities = model(transform(image).unsqueeze(0)).softmax(-1)  # image: a PIL image',
        '```', '',
        '## Citation', '', '```bibtex', CITATION, '```', '',
    ]
    return '\n'.join(lines)
