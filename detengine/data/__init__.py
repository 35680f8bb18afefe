"""Datasets, transforms and batching for DetScope's detectors (Qt-free).

Boxes are xyxy float32 in absolute pixels and labels contiguous ``0..C-1`` everywhere here;
COCO's ``[x, y, w, h]`` and category ids appear only when reading or writing COCO files.
"""
from .coco import CocoDataset, boxes_to_coco_bbox, coco_from_dict, load_coco_checked, write_coco
from .collate import Collate, collate, worker_init_fn
from .errors import DatasetError, DatasetProblem, ImageReadError
from .folder import (
                     IMAGE_EXTENSIONS,
                     DetectionDataset,
                     DetectionSample,
                     ImageFolderDataset,
                     read_image,
                     sample_to_results,
)
from .mixing import CachedMixUp, CachedMosaic
from .pipeline import IGNORED_TRANSFORMS, TRANSFORMS, build_pipeline
from .synthetic import (
                     SYNTHETIC_CLASSES,
                     SyntheticPaths,
                     default_synthetic_root,
                     ensure_synthetic_dataset,
                     generate_synthetic_image,
)
from .transforms import (
                     Compose,
                     Expand,
                     KeepRatioResize,
                     MinIoURandomCrop,
                     Normalize,
                     Pad,
                     PhotoMetricDistortion,
                     RandomCrop,
                     RandomFlip,
                     RandomResize,
                     Resize,
                     ToTensor,
                     YOLOXHSVRandomAug,
                     boxes_to_original,
                     flip,
                     rescale_size,
)
from .voc import VOC_CLASSES, VocDataset

__all__ = [
    "CocoDataset", "VocDataset", "ImageFolderDataset", "DetectionDataset", "DetectionSample",
    "load_coco_checked", "coco_from_dict", "write_coco", "boxes_to_coco_bbox", "read_image", "sample_to_results",
    "DatasetError", "DatasetProblem", "ImageReadError", "IMAGE_EXTENSIONS", "VOC_CLASSES",
    "SYNTHETIC_CLASSES", "SyntheticPaths", "ensure_synthetic_dataset", "default_synthetic_root",
    "generate_synthetic_image",
    "Compose", "build_pipeline", "boxes_to_original", "PhotoMetricDistortion", "Expand", "MinIoURandomCrop",
    "Resize", "KeepRatioResize", "RandomResize", "RandomFlip", "flip", "Pad", "Normalize", "ToTensor",
    "RandomCrop", "YOLOXHSVRandomAug", "CachedMosaic", "CachedMixUp",
    "TRANSFORMS", "IGNORED_TRANSFORMS", "rescale_size",
    "collate", "Collate", "worker_init_fn",
]
