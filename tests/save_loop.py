"""Test helper: restores a TrainState, then saves backups back to back until killed.

Run as ``python tests/save_loop.py OUT``; it prints ``restored <step>`` first. Nearly
all of its time is spent inside ``TrainState.save_backup``, so a kill at a random
moment lands in the middle of a save.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

from keras_vit.models import create_model  # noqa: E402
from keras_vit.training.state import TrainState  # noqa: E402

model = create_model("ViT-Ti/16", image_size=32, num_classes=10)  # 66 MB with Adam's moments
optimizer = keras.optimizers.Adam()
optimizer.build(model.trainable_variables)
state = TrainState(model, optimizer, sys.argv[1], writer=True)
step = state.restore()
print(f"restored {step}", flush=True)
while True:
    step += 1
    state.step.assign(step)
    state.save_backup()
