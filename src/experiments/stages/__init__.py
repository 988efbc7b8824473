"""The four stages a run is made of (prepare, train, infer, eval), each `run_<stage>(cfg, run_dir)`, in this order."""
