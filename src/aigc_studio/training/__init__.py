"""Training: one Trainer for every model kind (see docs/training.md).

``config`` (TrainConfig, recipes), ``schedule`` (learning rate), ``tasks`` (the TrainingTask interface),
``language_model`` (GPT and LSTM on token data sets), ``checkpoint``, ``trainer`` (the loop), ``progress`` and
``plots`` (what a run shows and writes), ``run`` (``run_training``: the ``aigc train`` command as a function).
"""
