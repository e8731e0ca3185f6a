"""modelhub: a lifecycle database for deep-learning models.

    import modelhub
    repo = modelhub.init_repo("experiments")      # or modelhub.open_repo()
    v = repo.commit(model, name="lenet", message="baseline", hparams={"lr": 0.01})
    repo.log("lenet"); repo.desc("lenet@1"); repo.diff("lenet@1", "lenet")
    ck = repo.checkout("lenet")                     # ck.module, ck.state_dict
"""
from .errors import ModelhubError
from .lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["Repo", "init_repo", "open_repo", "ModelhubError", "__version__"]

# Exported lazily (PEP 562): `dlv --version` and `dlv log` import this package, and the
# repository layer pulls in the catalog (DuckDB) that those need only when they use it.
_LAZY = {"Repo": ".repo", "init_repo": ".repo", "open_repo": ".repo"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
