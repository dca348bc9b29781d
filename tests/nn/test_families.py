"""The model families beside v3/v2: base, MBLA, QARepVGG, Lite; per-part activations; DLD without DFL."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from helpers import randomize_bn

from repyolo import build_model
from repyolo.nn.blocks import ConvBNAct, MBLABlock, QARepVGGBlock, mbla_branches
from repyolo.nn.lite import DPBlock, LiteEffiBlockS1, channel_shuffle, make_divisible
from repyolo.nn.units import basic_block


@pytest.mark.parametrize("c_in, c_out, s", [(8, 8, 1), (8, 16, 1), (8, 16, 2), (3, 8, 2)])
def test_qarepvgg_fuses_to_one_conv(c_in, c_out, s):
    torch.manual_seed(0)
    block = QARepVGGBlock(c_in, c_out, 3, s).eval()
    randomize_bn(block)
    square = c_in == c_out and s == 1
    assert (block.rbr_identity is not None) == square and (block.rbr_avg is not None) == square
    assert not hasattr(block.rbr_1x1, "bn") and isinstance(block.rbr_1x1, nn.Conv2d)  # bare 1x1, BN after the sum
    x = torch.randn(2, c_in, 11, 13, dtype=torch.float64)
    block.double()
    with torch.no_grad():
        ref = block(x)
        block.fuse()
        out = block(x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (3, 3) and convs[0].bias is not None
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.AvgPool2d)) for m in block.modules())


@pytest.mark.parametrize("n, branches", [(1, [1]), (2, [1]), (3, [1]), (4, [1, 2]), (6, [2, 3]), (8, [2, 4]),
                                         (16, [4, 8])])
def test_mbla_branches(n, branches):
    assert mbla_branches(n) == branches


def test_mbla_block_shapes_and_aggregation():
    block = MBLABlock(32, 48, n=8, e=0.5, block=basic_block("conv", "silu"), act="silu").eval()
    c = 24
    assert block.cv1.conv.out_channels == 3 * c  # one chunk per branch + the pass-through chunk
    assert block.cv2.conv.in_channels == (3 + 2 + 4) * c  # chunks + every unit's output
    assert [len(b) for b in block.m] == [2, 4] and all(u.depth == 3 for b in block.m for u in b)
    assert block(torch.randn(1, 32, 8, 8)).shape == (1, 48, 8, 8)


def test_conv_bn_without_activation_has_no_act_module():
    unit = ConvBNAct(4, 4, 3, 1, groups=4, act=None)
    assert unit.act is None and [n for n, _ in unit.named_children()] == ["conv", "bn"]


def test_dpblock_fuse_keeps_conv_bias():
    torch.manual_seed(0)
    block = DPBlock(6, 10, 5, 2).eval()
    randomize_bn(block)
    with torch.no_grad():
        block.conv_dw_1.bias.normal_()
        block.conv_pw_1.bias.normal_()
        x = torch.randn(2, 6, 15, 15)
        ref = block(x)
        block.fuse()
        torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)
    assert block.bn_1 is None and block.bn_2 is None


def test_channel_shuffle_interleaves_halves():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_lite_s1_block_keeps_first_half_untouched():
    block = LiteEffiBlockS1(8, 4, 8).eval()
    x = torch.randn(1, 8, 6, 6)
    y = block(x)
    torch.testing.assert_close(y[:, 0::2], x[:, :4])  # after the shuffle, the even channels are the first half


def test_make_divisible():
    assert [make_divisible(c * 0.7) for c in (32, 64, 128, 256)] == [32, 48, 96, 176]
    assert [make_divisible(c * 1.1) for c in (32, 64, 128, 256)] == [32, 64, 144, 288]


@pytest.mark.parametrize("name", ["yolov6lite-s", "yolov6lite-m", "yolov6lite-l"])
def test_lite_contract(name):
    model = build_model(name, num_classes=5).eval()
    assert model.max_stride == 64 and model.cfg["img_size"] == 320
    assert not hasattr(model.detect, "proj") and model.detect.proj_conv is None  # reg_max 0: no DFL constants
    x = torch.rand(2, 3, 128, 192)
    with torch.no_grad():
        y = model(x)
    a = sum((128 // s) * (192 // s) for s in (8, 16, 32, 64))
    assert y.shape == (2, a, 4 + 5)
    assert ((y[..., 4:] >= 0) & (y[..., 4:] <= 1)).all() and (y[..., 2] >= y[..., 0]).all()
    out = model.train()(x)
    assert out["cls"].shape == (2, a, 5) and out["reg"].shape == (2, a, 4)
    assert out["anchors"].shape == (a, 2) and out["strides"].shape == (a, 1)
    assert len(out["feats"]) == 4 and all(f.shape[1] == 96 for f in out["feats"])


def test_l_neck_lateral_convs_are_relu():
    """Official yolov6l: reduce / BiC / down-sample convs Conv-BN-ReLU, the CSP stages and backbone SiLU."""
    with torch.device("meta"):
        model = build_model("yolov6l")
    neck = model.neck
    lateral = [neck.reduce_layer0, neck.reduce_layer1, neck.downsample2, neck.downsample1,
               neck.Bifusion0.cv1, neck.Bifusion0.cv3, neck.Bifusion1.downsample]
    assert all(isinstance(m.act, nn.ReLU) for m in lateral)
    assert isinstance(neck.Rep_p4.cv1.act, nn.SiLU) and isinstance(neck.Rep_n4.m.conv1.conv1.act, nn.SiLU)
    assert isinstance(model.backbone.stem.act, nn.SiLU)


def test_dld_branch_without_dfl():
    """distill_ns on a reg_max-0 config: the DLD branch predicts 4 plain distances."""
    model = build_model("yolov6s", num_classes=3, width_multiple=0.125,
                        head={"use_dfl": False, "reg_max": 16, "dist_reg_max": 0, "aux_dist": True}).train()
    assert all(conv.out_channels == 4 for conv in model.detect.reg_preds_dist)
    out = model(torch.rand(1, 3, 64, 64))
    a = 8 * 8 + 4 * 4 + 2 * 2
    assert out["reg_dist"].shape == (1, a, 4) and out["reg"].shape == (1, a, 4)
    assert model.detect.proj.shape == (17,)  # the DFL constants of the official N/S heads stay
    model.eval().fuse()
    assert model.detect.reg_preds_dist is None and "reg_dist" not in model.train()(torch.rand(1, 3, 64, 64))


def test_dld_branch_default_follows_reg_max():
    model = build_model("yolov6n", num_classes=3, width_multiple=0.125, head={"aux_dist": True})
    assert all(conv.out_channels == 4 * 17 for conv in model.detect.reg_preds_dist)


@pytest.mark.parametrize("name, family", [("yolov6n-base", "base"), ("yolov6s-mbla", "mbla"), ("yolov6n-qa", "qa"),
                                          ("yolov6lite-s", "lite"), ("yolov6l", "v3"), ("yolov6l6", "v3-p6")])
def test_family_key(name, family):
    with torch.device("meta"):
        assert build_model(name).cfg["family"] == family
