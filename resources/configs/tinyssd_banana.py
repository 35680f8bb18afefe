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
