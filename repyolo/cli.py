"""The ``repyolo`` command line: one entry point with a sub-command per stage.

Each sub-command lives in ``repyolo/commands/<name>.py`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. The CLI is a thin shell over
:mod:`repyolo.api`; commands import heavy modules inside ``run`` so ``--help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from repyolo.errors import RepyoloError
from repyolo.utils.logging import get_logger, setup_logging

# sub-command name -> (module, one-line help)
COMMANDS = {
    "train": ("train", "train a model"),
    "val": ("val", "evaluate a model (or a predictions JSON) with COCO mAP"),
    "predict": ("predict", "run detection on images, folders, videos or streams"),
    "export": ("export", "export to ONNX / OpenVINO / TorchScript"),
    "quantize": ("quantize", "INT8 quantization: ptq, sensitivity, qat"),
    "bench": ("bench", "latency / throughput of one model on several backends"),
    "info": ("info", "the model zoo by family with published sizes, or one model's parameters and GFLOPs"),
    "demo": ("demo", "end-to-end run on the bundled synthetic data set"),
    "data": ("data", "check a data set or show augmented samples"),
    "convert": ("convert", "convert labels between VOC xml, COCO json and YOLO txt"),
    "import-weights": ("import_weights", "convert an official YOLOv6 checkpoint"),
}


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already says it (or there is
    none worth showing: an off switch, an empty list, ``None``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text.lower() or default is argparse.SUPPRESS
                or default is None or default is False or default == [] or default == ""):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-command parser below it, depth first."""
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                out += subparsers(child)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repyolo", description="YOLOv6 object detection")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"repyolo.commands.{module_name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    for p in subparsers(parser):
        p.formatter_class = DefaultsHelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except RepyoloError as exc:
        get_logger().error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        get_logger().error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
