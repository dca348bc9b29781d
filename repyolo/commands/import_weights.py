"""``repyolo import-weights WEIGHTS -o OURS.pt [--model NAME]``: convert released weights to a repyolo checkpoint.

Two kinds of released weights:

- an official YOLOv6 checkpoint (``yolov6s.pt`` ...), read without running code from it (see
  :mod:`repyolo.io.official`); the architecture is inferred from its keys and shapes;
- a released YOLOv6-Lite NCNN model (``yolov6-lite-s.param`` with its ``.bin`` beside it, fp16 or
  fp32 storage), mapped by dataflow onto ``yolov6lite-s`` / ``-m`` / ``-l`` (see
  :mod:`repyolo.io.ncnn_import`); folded convolutions come back as conv + identity BatchNorm.

``--model`` forces a config. Every tensor is checked to land in the repyolo model, and the result is
written as a repyolo checkpoint that ``train --weights``, ``val``, ``predict`` and ``export`` take
like any other. Calls
:func:`repyolo.api.import_weights`.
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="official YOLOv6 checkpoint (e.g. yolov6s.pt) or YOLOv6-Lite NCNN .param "
                                        "(its .bin beside it)")
    parser.add_argument("-o", "--output", default=None,
                        help="repyolo checkpoint to write (default: <name>_repyolo.pt beside the input)")
    parser.add_argument("--bin", default=None, help="NCNN: the .bin weights (default: the .param's name with .bin)")
    parser.add_argument("--model", default=None,
                        help="use this model config (bundled name or YAML) instead of inferring it from the weights")
    parser.add_argument("--no-aux", action="store_true",
                        help="drop the training-only head branches (anchor-aided, DLD) instead of keeping them")


def run(args: argparse.Namespace) -> int:
    from repyolo.api import import_weights

    out, s = import_weights(args.weights, args.output, model=args.model, keep_aux=not args.no_aux, bin=args.bin)
    rows = [
        ("model", f"{s['model']}" + (" (forced)" if args.model else " (inferred)")),
        ("family", s.get("family", "?")),
        ("classes", f"{s['nc']}" + (" (COCO names)" if s["nc"] == 80 else " (names class0..)")),
        ("width / depth", f"{s.get('width_multiple')} / {s.get('depth_multiple')}"),
        ("block / act", f"{s.get('block')} / {s.get('act')}"),
    ]
    if s.get("source") == "ncnn":
        rows += [("weights", f"{s.get('tensors')} tensors from the NCNN graph ({', '.join(s.get('dtypes', []))} -> "
                             f"float32), {s['params'] / 1e6:.2f}M parameters; folded BatchNorms restored as "
                             f"identity BatchNorms")]
    else:
        rows += [
            ("CSP (BepC3) e", f"{s.get('csp_e')}"),
            ("SPPF", s.get("sppf", "?")),
            ("DFL", f"{s.get('dfl')}"),
            ("training-only branches", (", ".join(s.get("aux_branches") or []) or "none")
             + (" (dropped)" if s.get("aux_branches") and args.no_aux else "")),
            ("weights", f"{s.get('tensors')} tensors from '{s.get('source')}' ({', '.join(s.get('dtypes', []))} -> "
                        f"float32), {s['params'] / 1e6:.2f}M parameters"),
        ]
    rows.append(("written", str(out)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
