"""Training, evaluation, export and quantization: what an ML engineer runs, never a worker.

A worker imports `skinscreen.models.classifier`, `preprocess`, `screening` and `gradcam` only;
`tests/worker/test_one_path.py` checks that a real worker process never loads this subpackage.
"""
