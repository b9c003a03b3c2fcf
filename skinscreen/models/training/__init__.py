"""Training, evaluation, export and quantization: what an ML engineer runs, never a worker.

A worker imports `skinscreen.models.classifier`, `preprocess`, `scoring` and `gradcam` only;
`tests/test_imports.py` checks that scoring never pulls this subpackage in.
"""
