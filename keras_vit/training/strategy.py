"""``--strategy``: one name for each way of spreading training over devices.

``auto`` picks TPUStrategy when a TPU address is given (or ``TPU_NAME`` is set),
MultiWorkerMirroredStrategy when ``TF_CONFIG`` describes several tasks,
MirroredStrategy over all local GPUs when there are several, and the default
(one device) otherwise.

Example:
    >>> from keras_vit.training.strategy import make_strategy
    >>> make_strategy("default").num_replicas_in_sync
    1
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


def split_cpu(num_devices: int) -> None:
    """Splits the CPU into ``num_devices`` logical devices (before TensorFlow starts using it).

    Lets MirroredStrategy run several replicas on a machine without GPUs, as
    the tests do; it must be called before any tensor is created.

    Args:
        num_devices: logical CPU devices to make.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    )


def _cluster_size() -> int:
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    return sum(len(tasks) for tasks in config.get("cluster", {}).values())


def make_strategy(name: str = "auto", tpu: str | None = None) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy called ``name``.

    Args:
        name: one of ``STRATEGIES``.
        tpu: TPU address or name (``--tpu``) for ``"tpu"``/``"auto"``; ``"local"``
            for a TPU VM.

    Returns:
        The strategy (for ``"tpu"``, with the TPU system initialised).

    Raises:
        ValueError: for an unknown name, or ``"multiworker"`` without ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        tpu = tpu or os.environ.get("TPU_NAME")
        if tpu:
            name = "tpu"
        elif _cluster_size() > 1:
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        if _cluster_size() == 0:
            raise ValueError(
                "strategy 'multiworker' needs TF_CONFIG describing the cluster and this task"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this task writes checkpoints, logs and exports (one task per cluster).

    Args:
        strategy: the run's strategy.

    Returns:
        True on the chief (and on any single-worker strategy).
    """
    return bool(strategy.extended.should_checkpoint)
