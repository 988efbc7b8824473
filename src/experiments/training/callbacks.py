"""Forwards the Trainer's logs (loss, learning rate, grad norm, tokens/s, peak memory, eval loss) to the tracker
at each logging step; transformers 5 reports to no tracker unless asked, and we ask only this one."""

from __future__ import annotations

from transformers import TrainerCallback

from experiments.tracking.metric_names import trainer_log_metrics


class MetricsToTracker(TrainerCallback):
    def __init__(self, tracker) -> None:
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            self.tracker.log_metrics(trainer_log_metrics(logs), step=state.global_step)
