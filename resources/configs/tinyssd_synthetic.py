# d2l's TinySSD, unchanged, trained from scratch on the built-in synthetic data set (5 classes).
# d2l's own recipe (plain SGD, lr 0.2, no augmentation) is tuned for one banana per image; for
# several objects of five shapes this recipe adds momentum, warm-up, a cosine decay, flips, and
# SSD's loss normalisation (positives + 3x hard negatives, divided by the number of positives):
# with d2l's plain means over all 5444 anchors the few positives barely get a gradient.
# TinySSD's smallest anchor is 0.2 of the input (51 px at 256): the synthetic images are made at
# 128 px and resized to 256, so its objects (22-120 px at 128) fall inside TinySSD's anchor range.
_base_ = './tinyssd_banana.py'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
]
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min_ratio=0.01, by_epoch=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=40, val_interval=5)
train_dataloader = dict(batch_size=16, num_workers=0)
model = dict(bbox_head=dict(num_classes=5), train_cfg=dict(neg_pos_ratio=3))
data = dict(default='synthetic', synthetic=dict(seed=0, num_train=240, num_val=60, image_size=128))
