# RetinaNet R50-FPN on COCO, 1x schedule model (mmdetection configs/retinanet/retinanet_r50_fpn_1x_coco.py).
_base_ = [
    './_base_/models/retinanet_r50_fpn.py', './_base_/schedules/sgd_step.py',
    './_base_/default_runtime.py'
]
