"""Training-framework callbacks that track runs in a repository (docs/RUNS.md).

    from modelhub.integrations.lightning import ModelhubCallback      # pip install 'modelhub[lightning]'
    from modelhub.integrations.hf import ModelhubTrainerCallback      # pip install 'modelhub[hf]'

Each module imports its framework; this package imports neither.
"""
