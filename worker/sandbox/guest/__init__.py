"""Code that runs INSIDE the sandbox (imported as `heldout_guest`).

Imports only the standard library, numpy, torch, safetensors and `reference_models`: the
project's other packages are not visible in the sandbox.
"""
