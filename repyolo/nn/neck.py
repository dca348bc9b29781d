"""Rep-PAN necks: top-down then bottom-up feature pyramids built from RepBlocks (or BepC3).

``fusion='concat'`` is the v2 Rep-PAN / CSPRep-PAN (up-sample, concatenate with the
backbone level); ``fusion='bic'`` is the v3 RepBiFPAN / CSPRepBiFPAN, whose BiC modules
also pull in the next finer backbone level. Both handle P5 (3 outputs) and P6 (4 outputs).

The stages use the model's 3x3 unit and activation; the lateral convs (``reduce_layer*``, the
BiC modules, ``downsample*``) have their own activation ``lateral_act``: the official L / L6 /
MBLA models train them as Conv-BN-ReLU beside SiLU stages.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from repyolo.nn.blocks import BiC, ConvBNAct, Transpose, stage_block
from repyolo.nn.units import basic_block

# module names per pyramid depth, as in the published checkpoints
_BOTTOM_UP_NAMES = {2: ["Rep_n3", "Rep_n4"], 3: ["Rep_n4", "Rep_n5", "Rep_n6"]}


class RepPAN(nn.Module):
    """Path-aggregation neck.

    Args:
        in_channels: backbone output channels, finest first: ``[P2, P3, ..., P_top]`` for
            ``fusion='bic'`` (P2 is needed), ``[P3, ..., P_top]`` for ``'concat'``.
        channels: neck widths: ``k`` lateral (reduce) widths, then ``k`` pairs
            (down-sample width, bottom-up stage width), where ``k = levels - 1``.
        repeats: ``k`` top-down then ``k`` bottom-up stage repeats (depth-scaled).
        csp_e, block, act, stage: the stages' hidden ratio, 3x3 unit, activation and kind (as in
            :class:`~repyolo.nn.backbone.EfficientRep`).
        lateral_act: activation of the reduce / BiC / down-sample convs (default ``act``).
    Input: the backbone feature list; output ``[N3, N4, ..., N_top]`` finest first.
    """

    def __init__(self, in_channels: list[int], channels: list[int], repeats: list[int], fusion: str = "bic",
                 csp_e: float | None = None, block: str = "repvgg", act: str = "relu", stage: str | None = None,
                 lateral_act: str | None = None):
        super().__init__()
        if fusion not in ("bic", "concat"):
            raise ValueError(f"unknown neck fusion {fusion!r}")
        self.fusion = fusion
        back = in_channels[1:] if fusion == "bic" else in_channels  # P3..P_top
        k = len(back) - 1
        if k not in _BOTTOM_UP_NAMES or len(channels) != 3 * k or len(repeats) != 2 * k:
            raise ValueError(f"neck expects 3 or 4 output levels, got backbone channels {in_channels}, "
                             f"neck channels {channels}, repeats {repeats}")
        self.k = k
        make = basic_block(block, act)
        lat_act = lateral_act or act
        top = len(back) + 2  # index of the coarsest level, e.g. 5 for P5
        self.td_names = [f"Rep_p{top - 1 - i}" for i in range(k)]
        self.down_names = [f"downsample{2 - i}" for i in range(k)]
        self.bu_names = _BOTTOM_UP_NAMES[k]
        c_prev = back[-1]
        for i in range(k):
            c_lat = channels[i]
            setattr(self, f"reduce_layer{i}", ConvBNAct(c_prev, c_lat, 1, 1, act=lat_act))
            same = back[-2 - i]
            if fusion == "bic":
                finer = in_channels[len(in_channels) - 3 - i]
                setattr(self, f"Bifusion{i}", BiC(same, finer, c_lat, act=lat_act))
                c_in = c_lat
            else:
                setattr(self, f"upsample{i}", Transpose(c_lat, c_lat))
                c_in = c_lat + same
            setattr(self, self.td_names[i], stage_block(c_in, c_lat, repeats[i], csp_e, make, act, stage))
            c_prev = c_lat
        self.out_channels = [c_prev]
        for i in range(k):
            c_down, c_out = channels[k + 2 * i], channels[k + 2 * i + 1]
            setattr(self, self.down_names[i], ConvBNAct(c_prev, c_down, 3, 2, act=lat_act))
            c_lat = channels[k - 1 - i]
            setattr(self, self.bu_names[i], stage_block(c_down + c_lat, c_out, repeats[k + i], csp_e, make, act,
                                                             stage))
            self.out_channels.append(c_out)
            c_prev = c_out

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        back = feats[1:] if self.fusion == "bic" else feats
        x = back[-1]
        laterals = []
        for i in range(self.k):
            lat = getattr(self, f"reduce_layer{i}")(x)
            laterals.append(lat)
            if self.fusion == "bic":
                fused = getattr(self, f"Bifusion{i}")([lat, back[-2 - i], feats[len(feats) - 3 - i]])
            else:
                fused = torch.cat((getattr(self, f"upsample{i}")(lat), back[-2 - i]), 1)
            x = getattr(self, self.td_names[i])(fused)
        outs = [x]
        for i in range(self.k):
            x = getattr(self, self.down_names[i])(x)
            x = getattr(self, self.bu_names[i])(torch.cat((x, laterals[self.k - 1 - i]), 1))
            outs.append(x)
        return outs
