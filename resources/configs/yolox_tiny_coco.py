# YOLOX-tiny (Ge et al. 2021, "YOLOX: Exceeding YOLO Series in 2021") on COCO: trained at 640 x 640,
# tested at 416 x 416, 300 epochs: mmdetection's configs/yolox/yolox_tiny_8xb8-300e_coco.py, which is
# YOLOX-s (./yolox_s_coco.py: the training, schedule and hooks, and what differs from mmdetection
# there) with deepen 0.33 / widen 0.375, 96 channels in neck and head, a 320..640 multi-scale batch
# augment, RandomAffine scaling 0.5..1.5 and no MixUp. Only those differences are written here, as in
# mmdetection's file.
_base_ = './yolox_s_coco.py'

model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(
            type='BatchSyncRandomResize',
            random_size_range=(320, 640),
            size_divisor=32,
            interval=10)
    ]),
    backbone=dict(deepen_factor=0.33, widen_factor=0.375),
    neck=dict(in_channels=[96, 192, 384], out_channels=96),
    bbox_head=dict(in_channels=96, feat_channels=96))

img_scale = (640, 640)  # width, height

train_pipeline = [
    dict(type='Mosaic', img_scale=img_scale, pad_val=114.0),
    dict(
        type='RandomAffine',
        scaling_ratio_range=(0.5, 1.5),
        # img_scale is (width, height)
        border=(-img_scale[0] // 2, -img_scale[1] // 2)),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    # Resize and Pad are for the last 15 epochs, when YOLOXModeSwitchHook skips Mosaic and RandomAffine
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs')
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(416, 416), keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs')
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
