# What a run does besides the model: data source, logging, checkpoints, seed.
data = dict(default='synthetic', synthetic=dict(seed=0, num_train=240, num_val=60, image_size=256))
default_hooks = dict(checkpoint=dict(interval=1))
randomness = dict(seed=0)
