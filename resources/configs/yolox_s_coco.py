# YOLOX-s (Ge et al. 2021, "YOLOX: Exceeding YOLO Series in 2021") on COCO, 640 x 640, 300 epochs:
# mmdetection's configs/yolox/yolox_s_8xb8-300e_coco.py. CSPDarknet (Focus stem, SPP) + YOLOXPAFPN +
# the decoupled YOLOXHead (class / box / objectness, nothing shared across levels), SimOTA assignment
# on sqrt(class x objectness) and the decoded boxes, L1 box loss added for the last epochs.
#
# Training is mmdetection's: the train pipeline (Mosaic, RandomAffine, MixUp, YOLOXHSVRandomAug,
# RandomFlip, Resize, Pad, FilterAnnotations) inside its MultiImageMixDataset wrapper, whose
# Mosaic / MixUp draw their other images from the data set; YOLOXModeSwitchHook drops Mosaic /
# RandomAffine / MixUp (the wrapper's skip_type_keys) and adds the L1 loss from epoch 285 (0-based 284
# = 300 - 15 - 1, as mmdetection's hook); the quadratic warm-up (mmdet.QuadraticWarmupLR, 5 epochs),
# cosine to 0.05 x lr until epoch 285 and constant lr after; SGD, EMA, BatchSyncRandomResize.
#
# What differs from mmdetection's file, and why:
# - model.data_preprocessor: mean 0 / std 1 / BGR is what mmdetection's DetDataPreprocessor does when
#   the file gives no mean and std (raw 0..255 BGR pixels), written out.
# - train_dataloader.dataset: the data set inside the wrapper only loads (LoadImageFromFile,
#   LoadAnnotations); where its images come from is DetScope's data (--data, the data key below),
#   not data_root / ann_file. DataLoader workers: 0 (set train_dataloader.num_workers to use more).
# - custom_hooks: SyncNormHook (BatchNorm statistics averaged over GPUs before validation) is left
#   out: DetScope's multi-GPU runs convert BN to SyncBatchNorm when the config says SyncBN.
_base_ = ['./_base_/default_runtime.py']

img_scale = (640, 640)  # width, height

model = dict(
    type='YOLOX',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[0.0, 0.0, 0.0],
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False,
        pad_size_divisor=32,
        batch_augments=[
            dict(
                type='BatchSyncRandomResize',
                random_size_range=(480, 800),
                size_divisor=32,
                interval=10)
        ]),
    backbone=dict(
        type='CSPDarknet',
        deepen_factor=0.33,
        widen_factor=0.5,
        out_indices=(2, 3, 4),
        use_depthwise=False,
        spp_kernal_sizes=(5, 9, 13),
        norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
        act_cfg=dict(type='Swish')),
    neck=dict(
        type='YOLOXPAFPN',
        in_channels=[128, 256, 512],
        out_channels=128,
        num_csp_blocks=1,
        use_depthwise=False,
        upsample_cfg=dict(scale_factor=2, mode='nearest'),
        norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
        act_cfg=dict(type='Swish')),
    bbox_head=dict(
        type='YOLOXHead',
        num_classes=80,
        in_channels=128,
        feat_channels=128,
        stacked_convs=2,
        strides=(8, 16, 32),
        use_depthwise=False,
        norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
        act_cfg=dict(type='Swish'),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='sum', loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', mode='square', eps=1e-16, reduction='sum', loss_weight=5.0),
        loss_obj=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='sum', loss_weight=1.0),
        loss_l1=dict(type='L1Loss', reduction='sum', loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='SimOTAAssigner', center_radius=2.5)),
    # mmdetection's: 0.01 when validating (0.001 for its official test numbers); no max_per_img
    test_cfg=dict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.65)))

train_pipeline = [
    dict(type='Mosaic', img_scale=img_scale, pad_val=114.0),
    dict(
        type='RandomAffine',
        scaling_ratio_range=(0.1, 2),
        # img_scale is (width, height)
        border=(-img_scale[0] // 2, -img_scale[1] // 2)),
    dict(type='MixUp', img_scale=img_scale, ratio_range=(0.8, 1.6), pad_val=114.0),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    # Resize and Pad are for the last 15 epochs, when YOLOXModeSwitchHook skips Mosaic, RandomAffine
    # and MixUp (multi-scale training is the data preprocessor's BatchSyncRandomResize)
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs')
]
# mmdetection's MultiImageMixDataset: Mosaic and MixUp take their other images from the data set
train_dataset = dict(
    type='MultiImageMixDataset',
    dataset=dict(
        type='CocoDataset',
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True)]),
    pipeline=train_pipeline)

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs')
]

max_epochs = 300
num_last_epochs = 15
interval = 10
base_lr = 0.01

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=interval)
train_dataloader = dict(batch_size=8, num_workers=0, dataset=train_dataset)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, weight_decay=5e-4, nesterov=True),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [
    # quadratic warm-up over 5 epochs, per iteration
    dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    # cosine from epoch 5 to 285
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=5, T_max=max_epochs - num_last_epochs,
         end=max_epochs - num_last_epochs, by_epoch=True, convert_to_iter_based=True),
    # fixed rate for the last 15 epochs
    dict(type='ConstantLR', by_epoch=True, factor=1, begin=max_epochs - num_last_epochs, end=max_epochs),
]
default_hooks = dict(checkpoint=dict(interval=interval))
custom_hooks = [
    dict(type='YOLOXModeSwitchHook', num_last_epochs=num_last_epochs, priority=48),
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True, priority=49)
]
# mmdetection's base batch: 8 GPUs x 8 images
auto_scale_lr = dict(base_batch_size=64)
