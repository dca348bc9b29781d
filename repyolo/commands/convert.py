"""``repyolo convert``: labels between Pascal VOC xml, COCO json and YOLO txt.

    repyolo convert voc2yolo VOC_DIR OUT_DIR [--names a,b,c] [--splits train,val,test] [--copy]
    repyolo convert coco2yolo ANNOTATIONS.json OUT_DIR [--images DIR] [--split NAME] [--copy]
    repyolo convert yolo2coco DATA OUT.json [--split val] [--names a,b,c]

The YOLO side is ``OUT_DIR/images/<split>`` (symlinks, or copies with ``--copy``),
``OUT_DIR/labels/<split>/*.txt`` and ``OUT_DIR/data.yaml``.
"""
from __future__ import annotations

import argparse


def _names(text):
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="convert_action", metavar="CONVERSION")
    v = sub.add_parser("voc2yolo", help="Pascal VOC folder (JPEGImages, Annotations, ImageSets) -> YOLO + data.yaml")
    v.add_argument("src", help="VOC folder (or a folder holding one)")
    v.add_argument("out", help="output folder")
    v.add_argument("--names", default=None, help="comma-separated class order (default: sorted names found)")
    v.add_argument("--splits", default=None, help="comma-separated ImageSets/Main lists (default train,val,test)")
    v.add_argument("--no-difficult", action="store_true", help="leave out objects flagged difficult")
    v.add_argument("--copy", action="store_true", help="copy images instead of symlinking them")
    c = sub.add_parser("coco2yolo", help="COCO json -> YOLO txt + data.yaml")
    c.add_argument("src", help="COCO annotation json")
    c.add_argument("out", help="output folder")
    c.add_argument("--images", default=None, help="folder the json's file_names are relative to")
    c.add_argument("--split", default=None, help="output split name (default from the json name)")
    c.add_argument("--copy", action="store_true", help="copy images instead of symlinking them")
    y = sub.add_parser("yolo2coco", help="YOLO data set -> COCO json ground truth")
    y.add_argument("src", help="data YAML, or an image folder / list file (with --names)")
    y.add_argument("out", help="output json")
    y.add_argument("--split", default="val", choices=["train", "val", "test"], help="split of a data YAML")
    y.add_argument("--names", default=None, help="comma-separated class names (for a bare folder)")
    parser.set_defaults(_parser=parser)


def run(args) -> int:
    action = getattr(args, "convert_action", None)
    if not action:
        args._parser.print_help()
        return 2
    from repyolo.data.convert import coco_to_yolo, voc_to_yolo, yolo_to_coco
    from repyolo.utils.paths import check_output_dir, check_output_path

    if action == "yolo2coco":
        check_output_path(args.out)
    else:
        check_output_dir(args.out)
    mode = "copy" if getattr(args, "copy", False) else "symlink"
    if action == "voc2yolo":
        splits = _names(args.splits)
        path = voc_to_yolo(args.src, args.out, names=_names(args.names), splits=splits, image_mode=mode,
                           include_difficult=not args.no_difficult)
        print(f"wrote {path}")
    elif action == "coco2yolo":
        path = coco_to_yolo(args.src, args.out, images_dir=args.images, split=args.split, image_mode=mode)
        print(f"wrote {path}")
    else:
        gt = yolo_to_coco(args.src, out_json=args.out, names=_names(args.names), split=args.split)
        print(f"wrote {args.out}: {len(gt['images'])} images, {len(gt['annotations'])} annotations, "
              f"{len(gt['categories'])} categories")
    return 0
