"""Running models: the training loop, its checkpoints and recipes, data parallelism, and the prediction loop.

* :mod:`~course_lib.engine.trainer`: :func:`~course_lib.engine.trainer.train`, the loop,
* :mod:`~course_lib.engine.recipes`: schedules, optimizers, mixed precision, the shipped recipes,
* :mod:`~course_lib.engine.settings`: the training options declared once (type, range, default, help),
* :mod:`~course_lib.engine.checkpoint`: atomic checkpoints and exact resume,
* :mod:`~course_lib.engine.distributed`: one process per GPU or CPU core,
* :mod:`~course_lib.engine.inference`: the one prediction loop over images or a dataset,
* :mod:`~course_lib.engine.step_benchmark`: the time of one training step, per model variant.
"""
