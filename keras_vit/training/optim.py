"""Learning-rate schedules and optimizers of the recipes.

Example:
    >>> from keras_vit.training.optim import WarmupSchedule
    >>> schedule = WarmupSchedule(0.1, total_steps=100, warmup_steps=10, decay="linear")
    >>> [round(float(schedule(s)), 4) for s in (0, 5, 10, 55, 100)]
    [0.0, 0.05, 0.1, 0.05, 0.0]
"""

from __future__ import annotations

import math

import keras
from keras import ops

DECAYS = ("cosine", "linear", "steps")
OPTIMIZERS = ("adam", "sgd")


@keras.saving.register_keras_serializable("keras_vit")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0, then cosine, linear or step decay (vision_transformer's schedule).

    Args:
        peak: learning rate at the end of the warm-up.
        total_steps: steps of the whole run.
        warmup_steps: steps of the linear warm-up.
        decay: ``"cosine"`` (to 0), ``"linear"`` (to ``end``) or ``"steps"``
            (x0.1 at 30%, 60% and 90% of the run: BiT's HyperRule).
        end: the learning rate that linear decay ends at.
    """

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_steps: int = 0,
        decay: str = "cosine",
        end: float = 0.0,
    ):
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}; got {decay!r}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps {warmup_steps} must be within 0..{total_steps}")
        self.peak, self.total_steps, self.warmup_steps = peak, total_steps, warmup_steps
        self.decay, self.end = decay, end

    def __call__(self, step: object) -> object:
        # keras.ops, not tf: the schedule also runs inside the JAX training step.
        step = ops.cast(step, "float32")
        warmup = float(max(self.warmup_steps, 1))
        span = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
        if self.decay == "cosine":
            rate = self.peak * 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.decay == "linear":
            rate = self.end + (self.peak - self.end) * (1.0 - progress)
        else:
            drops = sum(ops.cast(step >= f * self.total_steps, "float32") for f in (0.3, 0.6, 0.9))
            rate = self.peak * ops.power(0.1, drops)
        if self.warmup_steps:
            rate = rate * ops.minimum(1.0, step / warmup)
        return rate

    def get_config(self) -> dict:
        """Returns the constructor's arguments (the schedule is saved with the optimizer)."""
        return dict(
            peak=self.peak,
            total_steps=self.total_steps,
            warmup_steps=self.warmup_steps,
            decay=self.decay,
            end=self.end,
        )


class _SummedGradients:
    """Takes gradients that the training step already summed over replicas.

    Keras's TensorFlow optimizers sum gradients over replicas inside ``apply``
    (``_all_reduce_sum_gradients``), after any ``clipnorm``/``global_clipnorm``:
    clipping then acts on one replica's share. The training step instead sums
    first, clips the global norm of the sum, and only then applies (the paper's
    clipping), so the optimizer must not sum a second time.
    ``tests/test_training.py`` checks MirroredStrategy against one device.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return grads_and_vars


def make_optimizer(
    name: str,
    schedule: keras.optimizers.schedules.LearningRateSchedule,
    model: keras.Model,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    loss_scale: bool = False,
) -> keras.optimizers.Optimizer:
    """The recipe's optimizer, expecting gradients already summed over replicas.

    Args:
        name: ``"adam"`` (decoupled weight decay, as AdamW, on kernels only: big_vision's
            ``wd_mults``) or ``"sgd"`` (momentum).
        schedule: the learning-rate schedule.
        model: the model, whose kernels get weight decay.
        weight_decay: decoupled weight decay (multiplied by the learning rate).
        momentum: SGD momentum.
        beta_1: Adam's first-moment decay.
        beta_2: Adam's second-moment decay.
        loss_scale: wrap in a dynamic ``LossScaleOptimizer`` (float16 training).

    Returns:
        The optimizer (not yet built).

    Raises:
        ValueError: for an unknown name, or weight decay with ``"sgd"``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if name == "adam":
        base = keras.optimizers.AdamW if weight_decay else keras.optimizers.Adam
        kwargs = dict(beta_1=beta_1, beta_2=beta_2)
        if weight_decay:
            kwargs["weight_decay"] = weight_decay
    else:
        if weight_decay:
            raise ValueError("the sgd recipes use no weight decay; set --weight-decay 0")
        base, kwargs = keras.optimizers.SGD, dict(momentum=momentum)
    cls = type(base.__name__, (_SummedGradients, base), {})
    optimizer = cls(learning_rate=schedule, **kwargs)
    if weight_decay:
        optimizer.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if not v.path.endswith("kernel")]
        )
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
