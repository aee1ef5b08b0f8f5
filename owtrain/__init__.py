"""owtrain: serverless data-parallel training of PyTorch models on Apache OpenWhisk.

This small shared package holds what every part needs: the model registry, the safe tensor
codec and compression, typed errors, the retry helper, logging set-up and the `owtrain` CLI.
"""

__version__ = "0.1.0"
