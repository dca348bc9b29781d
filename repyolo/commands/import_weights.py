"""``repyolo import-weights OFFICIAL.pt -o OURS.pt [--model NAME]``: convert an official YOLOv6 checkpoint.

The official file is read without running code from it (see :mod:`repyolo.io.official`); the
architecture is inferred from its keys and shapes (or forced with ``--model``), every tensor is
checked to land in the repyolo model, and the result is written as a repyolo checkpoint that
``train --weights``, ``val``, ``predict`` and ``export`` take like any other. Calls
:func:`repyolo.api.import_weights`.
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="official YOLOv6 checkpoint (e.g. yolov6s.pt from the official releases)")
    parser.add_argument("-o", "--output", default=None,
                        help="repyolo checkpoint to write (default: <name>_repyolo.pt beside the input)")
    parser.add_argument("--model", default=None,
                        help="use this model config (bundled name or YAML) instead of inferring it from the weights")
    parser.add_argument("--no-aux", action="store_true",
                        help="drop the training-only head branches (anchor-aided, DLD) instead of keeping them")


def run(args: argparse.Namespace) -> int:
    from repyolo.api import import_weights

    out, s = import_weights(args.weights, args.output, model=args.model, keep_aux=not args.no_aux)
    rows = [
        ("model", f"{s['model']}" + (" (forced)" if args.model else " (inferred)")),
        ("family", s.get("family", "?")),
        ("classes", f"{s['nc']}" + (" (COCO names)" if s["nc"] == 80 else " (names class0..)")),
        ("width / depth", f"{s.get('width_multiple')} / {s.get('depth_multiple')} (stem {s.get('stem_channels')} ch)"),
        ("block / act", f"{s.get('block')} / {s.get('act')}"),
        ("CSP (BepC3) e", f"{s.get('csp_e')}"),
        ("SPPF", s.get("sppf", "?")),
        ("DFL", f"{s.get('dfl')}"),
        ("training-only branches", (", ".join(s.get("aux_branches") or []) or "none")
         + (" (dropped)" if s.get("aux_branches") and args.no_aux else "")),
        ("weights", f"{s.get('tensors')} tensors from '{s.get('source')}' ({', '.join(s.get('dtypes', []))} -> "
                    f"float32), {s['params'] / 1e6:.2f}M parameters"),
        ("written", str(out)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
