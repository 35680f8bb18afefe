# d2l's TinySSD (Dive into Deep Learning, sec. 14.7) for the one-class banana data set:
# five levels (32, 16, 8, 4, 1 for a 256x256 input), sizes from 0.2 to 1.05, ratios 1, 2, 0.5.
input_size = 256
model = dict(
    type='TinySSD',
    backbone=dict(type='TinySSDBaseNet', num_filters=[3, 16, 32, 64]),
    bbox_head=dict(
        type='TinySSDHead',
        num_classes=1,
        in_channels=[64, 128, 128, 128, 128],
        anchor_generator=dict(
            type='D2LPriorGenerator',
            sizes=[[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]],
            ratios=[[1, 2, 0.5]] * 5,
            image_size=(input_size, input_size)),
        bbox_coder=dict(type='D2LOffsetCoder'),
        loss_cls=dict(type='CrossEntropyLoss', loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='D2LGreedyAssigner', iou_threshold=0.5)),
    test_cfg=dict(score_thr=0.009999999, nms=dict(type='nms', iou_threshold=0.5)))
model.update(data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1], bgr_to_rgb=True))
# d2l feeds 0-255 float images and trains plain SGD (lr 0.2, weight decay 5e-4, batch 32).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
]
test_pipeline = train_pipeline
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.2, momentum=0.0, weight_decay=5e-4))
param_scheduler = [dict(type='ConstantLR', factor=1.0)]  # d2l: a constant rate (mmengine's default factor is 1/3)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20, val_interval=1)
train_dataloader = dict(batch_size=32, num_workers=0)
data = dict(default='synthetic', synthetic=dict(seed=0, num_train=240, num_val=60, image_size=256))
default_hooks = dict(checkpoint=dict(interval=1))
randomness = dict(seed=0)
