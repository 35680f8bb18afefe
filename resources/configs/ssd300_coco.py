# SSD300 on COCO (80 classes): mmdetection's configs/ssd/ssd300_coco.py model.
_base_ = [
    './_base_/models/ssd300.py', './_base_/schedules/sgd_step.py', './_base_/default_runtime.py'
]
