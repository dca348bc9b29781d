"""EfficientRep backbones (P5 and P6); with ``csp_e`` set they are the CSPBep backbones
(BepC3 stages, or MBLA stages with ``stage='mbla'``).

Input ``(B, 3, H, W)``; output the list of feature maps ``[P2?, P3, P4, P5(, P6)]`` where
``P_k`` has stride ``2**k``. ``P2`` is returned only with ``fuse_p2`` (the v3 necks fuse it).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from repyolo.nn.blocks import SPPFWrapper, stage_block
from repyolo.nn.units import basic_block


class EfficientRep(nn.Module):
    """Stem + ``len(channels) - 1`` stages ``ERBlock_k`` (a stride-2 block then a RepBlock/BepC3),
    with SimSPPF / SimCSPSPPF (SPPF / CSPSPPF for SiLU models) closing the last stage.

    Args:
        channels: output channels of the stem and of each stage, e.g. ``[16, 32, 64, 128, 256]``.
        repeats: blocks per stage (the stem entry is ignored), already depth-scaled.
        block: the 3x3 unit (``'repvgg'``, ``'qarepvgg'``, ``'conv'`` ..., see
            :func:`~repyolo.nn.units.basic_block`); ``act``: its activation.
        csp_e: hidden ratio of the BepC3 / MBLA stages, ``None`` for RepBlock stages.
        fuse_p2: also return the stride-4 feature (v3 necks).
        cspsppf: use the CSP variant of SPPF.
        stage: stage block kind (``'repblock'``, ``'bepc3'``, ``'mbla'``); ``None`` = by ``csp_e``.
    """

    def __init__(self, channels: list[int], repeats: list[int], block: str = "repvgg", act: str = "relu",
                 csp_e: float | None = None, fuse_p2: bool = False, cspsppf: bool = False,
                 stage: str | None = None):
        super().__init__()
        make = basic_block(block, act)
        self.fuse_p2 = fuse_p2
        self.num_stages = len(channels) - 1
        self.stem = make(3, channels[0], 3, 2)
        for i in range(1, len(channels)):
            layers = [make(channels[i - 1], channels[i], 3, 2),
                      stage_block(channels[i], channels[i], repeats[i], csp_e, make, act, stage)]
            if i == len(channels) - 1:
                layers.append(SPPFWrapper(channels[i], channels[i], csp=cspsppf, act=act))
            setattr(self, f"ERBlock_{i + 1}", nn.Sequential(*layers))
        self.out_channels = channels[1 if fuse_p2 else 2:]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"ERBlock_{i + 1}")(x)
            if i >= 2 or (i == 1 and self.fuse_p2):
                outs.append(x)
        return outs
