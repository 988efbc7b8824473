"""MLflow: runs and their store, what each figure is called there, the final adapter as an MLflow model."""
