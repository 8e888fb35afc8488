"""validate/reference_nets.py: the paper's "NF, He init" net uses its conv weights as drawn, not standardised."""
import torch
import torch.nn.functional as F

from timm_nf.spp import signal_propagation
from validate.reference_nets import HeInitConv2d, nf_resnet_he_init

from helpers import perturb_


def test_he_init_conv_uses_its_weight_as_drawn():
    conv = perturb_(HeInitConv2d(8, 4, 3, 2, input_scale=0.5, output_scale=0.2, padding='same'))  # gain ≠ 1, bias ≠ 0
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        by_hand = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight * conv.gain * 0.1, conv.bias * 0.2, 2)
        assert torch.allclose(conv(x), by_hand, atol=1e-6)


def test_he_init_net_shows_the_mean_shift():
    """The paper's Fig. 2: with He-initialised convs the average channel squared mean is large at every block (about
    4 here; the Scaled-WS net of the same shape stays below 0.07, validate/results/spp_findings.json)."""
    torch.manual_seed(0)
    he = signal_propagation(nf_resnet_he_init((1, 1, 1, 1)), batch=2, img_size=64, skipinit_gain=1.0)
    assert min(row.avg_sq_mean for row in he.rows[1:]) > 1.0
