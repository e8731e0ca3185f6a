"""modelhub: a lifecycle database for deep-learning models.

    import modelhub
    repo = modelhub.init_repo("experiments")      # or modelhub.open_repo()
    v = repo.commit(model, name="lenet", message="baseline", hparams={"lr": 0.01})
    repo.log("lenet"); repo.desc("lenet@1"); repo.diff("lenet@1", "lenet")
    ck = repo.checkout("lenet")                     # ck.module, ck.state_dict
"""
from .errors import ModelhubError

__version__ = "0.1.0"
__all__ = ["Repo", "init_repo", "open_repo", "ModelhubError", "__version__"]


def __getattr__(name: str):
    # The repository facade imports torch; importing it on first use lets the parts that
    # only read the catalog (the web UI's pages) start without torch.
    if name in ("Repo", "init_repo", "open_repo"):
        from . import repo
        return getattr(repo, name)
    raise AttributeError(f"module 'modelhub' has no attribute {name!r}")
