"""modelhub: a lifecycle database for deep-learning models.

    import modelhub
    repo = modelhub.init_repo("experiments")      # or modelhub.open_repo()
    v = repo.commit(model, name="lenet", message="baseline", hparams={"lr": 0.01})
    repo.log("lenet"); repo.desc("lenet@1"); repo.diff("lenet@1", "lenet")
    ck = repo.checkout("lenet")                     # ck.module, ck.state_dict
"""
from .errors import ModelhubError
from .repo import Repo, init_repo, open_repo

__version__ = "0.1.0"
__all__ = ["Repo", "init_repo", "open_repo", "ModelhubError", "__version__"]
