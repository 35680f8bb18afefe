# SSD512 on Pascal VOC (20 classes): ratio range (0.15, 0.9).
_base_ = './ssd512_coco.py'
model = dict(
    bbox_head=dict(
        num_classes=20,
        anchor_generator=dict(basesize_ratio_range=(0.15, 0.9))))
