# YOLOX-tiny (Ge et al. 2021, "YOLOX: Exceeding YOLO Series in 2021") on COCO: trained at 640 x 640,
# tested at 416 x 416, 300 epochs: mmdetection's configs/yolox/yolox_tiny_8xb8-300e_coco.py (YOLOX-s with
# deepen 0.33 / widen 0.375, 96 channels in neck and head, no MixUp, RandomAffine scaling 0.5..1.5).
# CSPDarknet (Focus stem, SPP) + YOLOXPAFPN + the decoupled YOLOXHead (class / box / objectness, nothing
# shared across levels), SimOTA assignment on sqrt(class x objectness) and the decoded boxes, L1 box loss
# added for the last epochs.
#
# What differs from mmdetection's file, and why:
# - model.data_preprocessor: mean 0 / std 1 / BGR is what mmdetection's DetDataPreprocessor does when
#   the file gives no mean and std (raw 0..255 BGR pixels), written out. Its batch augment is
#   mmdetection's: BatchSyncRandomResize, a random 320..640 input every 10 iterations (training only).
# - train_pipeline: DetScope has no Mosaic, RandomAffine or MixUp. Stage 1 stands in with CachedMosaic,
#   RandomResize + RandomCrop (RandomAffine's 0.5..1.5 scaling and its 640 x 640 output, without its
#   rotation, shear and translation); YOLOX-tiny has no MixUp. Stage 2, the last 15 epochs
#   (YOLOXModeSwitchHook drops Mosaic / RandomAffine / MixUp there), is mmdetection's pipeline exactly:
#   the switch is the PipelineSwitchHook below, at the hook's epoch (0-based 284 = 300 - 15 - 1).
# - param_scheduler: mmdetection's 'mmdet.QuadraticWarmupLR' (lr x (k + 1)^2 / T^2 over the first
#   5 epochs) is not among DetScope's schedulers; a LinearLR warm-up over the same 5 epochs stands
#   in. The cosine (epochs 5..285 down to 0.05 x lr) and the constant last 15 epochs are mmdetection's.
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
                random_size_range=(320, 640),
                size_divisor=32,
                interval=10)
        ]),
    backbone=dict(
        type='CSPDarknet',
        deepen_factor=0.33,
        widen_factor=0.375,
        out_indices=(2, 3, 4),
        use_depthwise=False,
        spp_kernal_sizes=(5, 9, 13),
        norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
        act_cfg=dict(type='Swish')),
    neck=dict(
        type='YOLOXPAFPN',
        in_channels=[96, 192, 384],
        out_channels=96,
        num_csp_blocks=1,
        use_depthwise=False,
        upsample_cfg=dict(scale_factor=2, mode='nearest'),
        norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
        act_cfg=dict(type='Swish')),
    bbox_head=dict(
        type='YOLOXHead',
        num_classes=80,
        in_channels=96,
        feat_channels=96,
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
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CachedMosaic', img_scale=img_scale, pad_val=114.0, max_cached_images=40, random_pop=True),
    dict(type='RandomResize', scale=(1280, 1280), ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs')
]
# the last 15 epochs: mmdetection's pipeline without Mosaic and RandomAffine
train_pipeline_stage2 = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
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

max_epochs = 300
num_last_epochs = 15
interval = 10
base_lr = 0.01

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=interval)
train_dataloader = dict(batch_size=8, num_workers=0)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, weight_decay=5e-4, nesterov=True),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [
    # warm-up over 5 epochs, per iteration (mmdetection: QuadraticWarmupLR, not available here)
    dict(type='LinearLR', start_factor=0.001, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    # cosine from epoch 5 to 285
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=5, T_max=max_epochs - num_last_epochs,
         end=max_epochs - num_last_epochs, by_epoch=True, convert_to_iter_based=True),
    # fixed rate for the last 15 epochs
    dict(type='ConstantLR', by_epoch=True, factor=1, begin=max_epochs - num_last_epochs, end=max_epochs),
]
default_hooks = dict(checkpoint=dict(interval=interval))
custom_hooks = [
    dict(type='YOLOXModeSwitchHook', num_last_epochs=num_last_epochs, priority=48),
    dict(type='PipelineSwitchHook', switch_epoch=max_epochs - num_last_epochs - 1,
         switch_pipeline=train_pipeline_stage2),
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True, priority=49)
]
# mmdetection's base batch: 8 GPUs x 8 images
auto_scale_lr = dict(base_batch_size=64)
