"""Where a JAX run's arrays live: Keras's distribution API over every device, on one or many hosts.

``--strategy`` keeps its names where they mean something on JAX:

- ``default``: one device, no distribution;
- ``auto``, ``mirrored``, ``tpu``: ``keras.distribution.DataParallel`` over all
  devices (GPUs, TPU cores, or CPU devices; JAX finds TPUs itself);
- ``multiworker``: ``keras.distribution.initialize()`` first, which starts JAX's
  multi-host runtime (``jax.distributed.initialize``) from
  ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator's ``host:port`` first),
  ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``, or
  on a Cloud TPU pod or under SLURM from the environment JAX detects itself;
  then DataParallel over the devices of every host. ``auto`` does the same when
  ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` is set. CPU processes need
  ``JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo`` for their collectives (how
  ``tests/test_training_jax.py`` runs two on loopback).

Variables are replicated; each batch is one global array split over the devices
along the batch, each process giving its own share of the global batch
(``jax.make_array_from_process_local_data``).

Example (with ``KERAS_BACKEND=jax``; ``tests/test_training_jax.py`` runs it):
    >>> import numpy as np
    >>> from keras_vit.training.jax_distribution import global_batch, make_distribution
    >>> distribution = make_distribution("auto")
    >>> images = global_batch(distribution, [np.zeros([8, 4], "float32")])[0]
    >>> images.shape, len(images.sharding.device_set) == len(distribution.device_mesh.devices.flat)
    ((8, 4), True)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import keras
import numpy as np

JOB_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"


def make_distribution(strategy: str) -> keras.distribution.DataParallel | None:
    """The distribution of ``--strategy`` on JAX (None for ``default``: one device).

    Args:
        strategy: a ``keras_vit.training.strategy.STRATEGIES`` name.

    Returns:
        DataParallel over every device of every process, or None.
    """
    if strategy == "default":
        return None
    if strategy == "multiworker" or (strategy == "auto" and os.environ.get(JOB_ADDRESSES)):
        keras.distribution.initialize()
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices())


def replicas(distribution: keras.distribution.DataParallel | None) -> int:
    """Devices the batch is split over (1 without a distribution)."""
    return 1 if distribution is None else int(distribution.device_mesh.devices.size)


def is_chief() -> bool:
    """Whether this process writes backups, logs and the final model (process 0)."""
    return jax.process_index() == 0


def global_batch(
    distribution: keras.distribution.DataParallel | None, arrays: Sequence[np.ndarray]
) -> list[jax.Array]:
    """This process's share of a batch as global arrays split over the devices.

    Args:
        distribution: from ``make_distribution``.
        arrays: this process's examples (``global batch / process count`` each).

    Returns:
        The global arrays (on the default device without a distribution).
    """
    if distribution is None:
        return [jax.device_put(a) for a in arrays]
    sharded = []
    for a in arrays:
        shape = (a.shape[0] * jax.process_count(), *a.shape[1:])
        layout = distribution.get_data_layout(shape).backend_layout
        sharded.append(jax.make_array_from_process_local_data(layout, a))
    return sharded
