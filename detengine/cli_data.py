"""``detengine convert`` and ``detengine stats``: datasets in and out of COCO, YOLO, Pascal VOC and
labelme, and what a dataset holds. :mod:`detengine.cli` registers them (:func:`add_parsers`);
the work is the engine's (:mod:`detengine.data.export`, :mod:`detengine.data.stats`). Nothing
heavy is imported until a command runs, so ``--help`` stays quick."""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parsers", "run_convert", "run_stats", "CONVERT_FORMATS", "COMMANDS"]

#: as :data:`detengine.data.export.EXPORT_FORMATS` (a test checks; importing it here would load torch)
CONVERT_FORMATS = ("coco", "yolo", "voc", "labelme")
_SOURCE_HELP = ("a COCO .json file, a YOLO data.yaml, a folder of images with YOLO .txt labels (labelImg, "
                "classes.txt), a labelme folder or a Pascal VOC folder (Annotations/ + JPEGImages/)")
_PROBLEMS_SHOWN = 50


def add_parsers(sub) -> None:
    """Add the ``convert`` and ``stats`` subcommands to ``sub`` (argparse's subparsers)."""
    p = sub.add_parser("convert", help="convert a dataset between COCO, YOLO, Pascal VOC and labelme",
                       description="Convert a dataset: every box kept (what the target format cannot hold, it says). "
                                   "Folder formats link the images into DST (--copy-images to copy them).",
                       epilog="example:\n  %(prog)s data/data.yaml out/voc --to voc\n  %(prog)s labelme_folder "
                              "out/annotations.json --to coco",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help=_SOURCE_HELP)
    p.add_argument("dst", help="a new or empty folder (yolo, voc, labelme) or a .json file (coco)")
    p.add_argument("--to", required=True, choices=CONVERT_FORMATS, help="the format to write")
    p.add_argument("--copy-images", action="store_true",
                   help="copy the image files into DST instead of linking them (folder formats)")
    p.add_argument("--images", help="image folder of a COCO SRC (default: found beside the .json)")
    p = sub.add_parser("stats", help="what a dataset holds: classes, box sizes, empty images, problems",
                       description="Images, boxes and classes of a dataset, boxes per class, box width / height / "
                                   "aspect-ratio histograms, images without boxes, boxes outside their image and "
                                   "the problems found opening it.",
                       epilog="example:\n  %(prog)s data/data.yaml\n  %(prog)s data/annotations.json --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help=_SOURCE_HELP)
    p.add_argument("--json", action="store_true", help="print the numbers as JSON instead of text")
    p.add_argument("--bins", type=int, default=10, help="bins of the width and height histograms (default 10)")
    p.add_argument("--images", help="image folder of a COCO file (default: found beside the .json)")


def run_convert(args) -> int:
    from .data.export import convert_dataset
    project, result = convert_dataset(args.src, args.dst, args.to, images="copy" if args.copy_images else "link",
                                      image_root=args.images)
    print(f"read {project.kind} {args.src}: {len(project.images)} images, {project.num_boxes} boxes, "
          f"{len(project.categories)} classes")
    _print_problems(project.problems, sys.stdout)
    print(result.summary())
    return 0


def run_stats(args) -> int:
    from .data.project import AnnotationProject
    from .data.stats import dataset_stats
    stats = dataset_stats(AnnotationProject.open(args.path, image_root=args.images), bins=args.bins,
                          source=args.path)
    print(json.dumps(stats.to_json_dict(), indent=1, ensure_ascii=False) if args.json else stats.summary())
    return 0


def _print_problems(problems: list, stream) -> None:
    if not problems:
        return
    print(f"{len(problems)} problems in the source:", file=stream)
    for problem in problems[:_PROBLEMS_SHOWN]:
        print(f"  {problem}", file=stream)
    if len(problems) > _PROBLEMS_SHOWN:
        print(f"  ... and {len(problems) - _PROBLEMS_SHOWN} more (detengine stats lists them all with --json)",
              file=stream)


#: subcommand name -> run function, for :func:`detengine.cli.main`
COMMANDS = {"convert": run_convert, "stats": run_stats}
