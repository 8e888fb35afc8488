"""Signal Propagation Plots (Brock, De & Smith 2021, §3): per-block signal statistics of residual nets, and the figure.

Works on any timm model whose residual blocks follow timm's naming conventions (CONVENTIONS), or are named by a
`blocks` pattern; the residual-branch variance is measured for the block types in BRANCH_KNOWN.

    from timm_nf.spp import signal_propagation, plot_spp
    result = signal_propagation(timm.create_model('dm_nf_resnet50'), skipinit_gain=1.0)
    result.to_csv('spp.csv'); plot_spp([result], 'spp.png')
"""
from .anatomy import BRANCH_KNOWN, find_anatomy
from .conventions import CONVENTIONS
from .inputs import folder_input, gaussian_input
from .plot import plot_spp
from .result import BlockStats, SPPResult, write_csv
from .stats import channel_stats, has_skipinit_gain, signal_propagation, skipinit_gain_set

__all__ = ['BRANCH_KNOWN', 'BlockStats', 'CONVENTIONS', 'SPPResult', 'channel_stats', 'find_anatomy', 'folder_input',
           'gaussian_input', 'has_skipinit_gain', 'plot_spp', 'signal_propagation', 'skipinit_gain_set', 'write_csv']
