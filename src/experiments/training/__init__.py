"""What the train stage builds on: micro-batches, the out-of-memory re-plan, val-set execution accuracy, callbacks."""
