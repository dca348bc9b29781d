"""``repyolo import-weights WEIGHTS -o OURS.pt [--model NAME]``: convert released weights to a repyolo checkpoint.

Two kinds of released weights:

- an official YOLOv6 checkpoint (``yolov6s.pt`` ...), read without running code from it (see
  :mod:`repyolo.io.official`); the architecture is inferred from its keys and shapes;
- a released YOLOv6-Lite NCNN model (``yolov6-lite-s.param`` with its ``.bin`` beside it, fp16 or
  fp32 storage), mapped by dataflow onto ``yolov6lite-s`` / ``-m`` / ``-l`` (see
  :mod:`repyolo.io.ncnn_import`); folded convolutions come back as conv + identity BatchNorm.

``--model`` forces a config. Every tensor is checked to land in the repyolo model, and the result is
written as a repyolo checkpoint that ``train --weights``, ``val``, ``predict`` and ``export`` take
like any other.
"""
from __future__ import annotations

import argparse
from pathlib import Path


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
    from repyolo.errors import RepyoloError
    from repyolo.io.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
    from repyolo.io.ncnn_import import convert_ncnn, looks_ncnn
    from repyolo.io.official import convert_official

    src = Path(args.weights)
    out = Path(args.output) if args.output else src.with_name(f"{src.stem}_repyolo.pt")
    if out.resolve() == src.resolve() or (args.bin and out.resolve() == Path(args.bin).resolve()):
        raise RepyoloError(f"{out}: the output would overwrite the input file; choose another -o")
    ncnn = looks_ncnn(src)
    if ncnn:
        ckpt = convert_ncnn(src, args.bin, model=args.model)
    elif args.bin:
        raise RepyoloError(f"--bin is for NCNN .param files; {src} is not one")
    else:
        ckpt = convert_official(src, keep_aux=not args.no_aux, model=args.model)
    save_checkpoint(ckpt, out)
    model_from_checkpoint(read_checkpoint(out))  # the written file loads into its model
    s = ckpt["args"]["import"]
    rows = [
        ("model", f"{s['model']}" + (" (forced)" if args.model else " (inferred)")),
        ("family", s.get("family", "?")),
        ("classes", f"{s['nc']}" + (" (COCO names)" if s["nc"] == 80 else " (names class0..)")),
        ("width / depth", f"{s.get('width_multiple')} / {s.get('depth_multiple')}"),
        ("block / act", f"{s.get('block')} / {s.get('act')}"),
    ]
    if ncnn:
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
