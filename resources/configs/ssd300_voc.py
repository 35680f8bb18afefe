# SSD300 on Pascal VOC (20 classes): first-level anchors at 10%..20%, ratio range (0.2, 0.9).
_base_ = [
    './_base_/models/ssd300.py', './_base_/schedules/sgd_step.py', './_base_/default_runtime.py'
]
model = dict(
    bbox_head=dict(
        num_classes=20,
        anchor_generator=dict(basesize_ratio_range=(0.2, 0.9))))
