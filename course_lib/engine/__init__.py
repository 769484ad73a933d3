"""Running models: the training loop, its checkpoints and recipes, data parallelism (the prediction loop is :mod:`course_lib.evaluation.inference`).

* :mod:`~course_lib.engine.trainer`: :func:`~course_lib.engine.trainer.train`, the loop,
* :mod:`~course_lib.engine.run`: a run's state (setup, resume from a checkpoint, save),
* :mod:`~course_lib.engine.recipes`: schedules, optimizers, mixed precision, the shipped recipes,
* :mod:`~course_lib.engine.settings`: the training options declared once (type, range, default, help),
* :mod:`~course_lib.engine.checkpoint`: atomic checkpoints and exact resume,
* :mod:`~course_lib.engine.distributed`: one process per GPU or CPU core (torchrun, or ``--processes``),
* :mod:`~course_lib.engine.step_benchmark`: the time of one training step, per model variant.
"""
