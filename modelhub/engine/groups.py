"""Fused training groups: the heads that read one prefix node, and the features they read.

Candidates whose trainable part starts at the same prefix-tree node (and, with
augmentation, use the same augmentation and seed) form one group: each epoch
pass reads the node's features once and advances every head of the group
(``train_here``). :class:`GroupFeatures` serves those features: the
preprocessed inputs at a root, the stored chunks of a materialized node, or
prefix outputs recomputed from the nearest stored ancestor (the planner's
choice); a node small enough is kept in memory across epochs. Executors
(executor.py, ray_backend.py) decide where a group's passes run; the
features and the training loop are the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .config import Augmentation
from .data import DataView, augment
from .extract import Collector, ExtractionStats, extract
from .features import FeatureStore
from .train import CandidateTrainer
from .tree import PrefixTree

Progress = Callable[..., None]
GroupData = tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]    # train features, (val features, val labels)


@dataclass(frozen=True)
class StoredFeatures:
    """A group whose node is materialized: a worker can read its features from the store itself."""
    key: str
    dtype: str
    n: int


@dataclass(eq=False)
class TrainingGroup:
    """Heads trained together: one pass over the node's features per epoch advances all of them."""
    boundary: str                                 # the prefix-tree node the heads read
    trainers: dict[str, CandidateTrainer]         # candidate id -> its trainer, in candidate order
    augmentation: Augmentation | None = None      # fresh augmented inputs every epoch (never cached)
    seed: int = 0                                 # the augmentation's seed (the group's candidates share it)
    cache: GroupData | None = None
    epochs_served: int = 0

    def active(self, alive: set[str], stop_at: int | None) -> list[CandidateTrainer]:
        """The trainers of candidates still alive that have steps left before ``stop_at``."""
        return [t for cid, t in self.trainers.items()
                if cid in alive and not t.done and (stop_at is None or t.step < stop_at)]


@dataclass(eq=False)
class GroupFeatures:
    """The features each group trains on, computed or loaded the way the plan decided."""
    tree: PrefixTree
    data: DataView
    store: FeatureStore | None
    available: dict[str, str]                     # node -> dtype of nodes fully stored
    batch_size: int                               # extraction batch size for recomputed nodes
    device: torch.device
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    y_train: torch.Tensor
    y_val: torch.Tensor
    itemsize: int                                 # bytes per stored feature value
    memory_cache: int                             # stored nodes up to this size stay in memory
    recomputed: ExtractionStats = field(default_factory=ExtractionStats)
    records_loaded: int = 0                       # feature rows read from the store here
    _y_train_on: torch.Tensor | None = None       # y_train on the device of resident features

    def stored(self, group: TrainingGroup) -> StoredFeatures | None:
        """Where a worker can read the group's features itself (a materialized node), else None."""
        key = group.boundary
        if key in self.available and self.store is not None and not self.tree.is_root(key):
            return StoredFeatures(key, self.available[key], self.data.n)
        return None

    def of(self, group: TrainingGroup) -> GroupData:
        """The group's training features and its validation features and labels, for one epoch."""
        if group.cache is not None:
            return group.cache
        if group.augmentation is not None:
            return self._augmented(group)
        key, n = group.boundary, self.data.n
        cacheable = True
        if self.tree.is_root(key):
            feats = self.tree.nodes[key].preprocessing.apply(self.data.x)
        elif key in self.available and self.store is not None:
            feats = torch.from_numpy(self.store.read(key, self.data.uid, self.available[key], 0, n)).float()
            self.records_loaded += n
            cacheable = feats.numel() * self.itemsize <= self.memory_cache
        else:
            col = Collector()
            extract(self.tree, {key}, self.data, 0, n, sink=col, batch_size=self.batch_size, device=self.device,
                    stats=self.recomputed, store=self.store, available=self.available)
            feats = col.result(key).cpu()
            cacheable = False    # not stored: recomputed every epoch (the planner's choice)
        out = (feats[self.train_idx], (feats[self.val_idx], self.y_val))
        if cacheable:
            out = self._resident(out)
            group.cache = out
        return out

    def train_labels(self, like: torch.Tensor) -> torch.Tensor:
        """The training labels, on the device of the features ``like`` (copied there once)."""
        if like.device == self.y_train.device:
            return self.y_train
        if self._y_train_on is None or self._y_train_on.device != like.device:
            self._y_train_on = self.y_train.to(like.device)
        return self._y_train_on

    def _resident(self, data: GroupData) -> GroupData:
        """On a GPU, features kept across epochs live on the device when they take at most half
        of its free memory: a step then indexes them there instead of copying a batch from the
        host, which waits for the device at every step (pageable memory)."""
        if self.device.type != "cuda":
            return data
        train, (val, y_val) = data
        free, _ = torch.cuda.mem_get_info(self.device)
        if train.nbytes + val.nbytes > free // 2:
            return data
        return train.to(self.device), (val.to(self.device), y_val.to(self.device))

    def _augmented(self, group: TrainingGroup) -> GroupData:
        """Freshly augmented training inputs through the prefix (a new draw each epoch), and the
        clean validation features."""
        key, n = group.boundary, self.data.n
        gen = torch.Generator().manual_seed(group.seed * 1_000_003 + group.epochs_served)
        col = Collector()
        extract(self.tree, {key}, self.data, 0, n, sink=col, batch_size=self.batch_size, device=self.device,
                stats=self.recomputed, transform=lambda x, _a: augment(x, group.augmentation, gen))
        feats_aug = col.result(key)
        col = Collector()
        extract(self.tree, {key}, self.data, 0, n, sink=col, batch_size=self.batch_size, device=self.device,
                stats=self.recomputed, store=self.store, available=self.available)
        clean = col.result(key)
        group.epochs_served += 1
        return feats_aug[self.train_idx], (clean[self.val_idx], self.y_val)


def train_here(group: TrainingGroup, features: GroupFeatures, alive: set[str], stop_at: int | None,
               progress: Progress) -> None:
    """Advance the group's live heads in this process, one fused pass per epoch, until each is
    done or reaches ``stop_at`` steps."""
    while True:
        active = group.active(alive, stop_at)
        if not active:
            break
        train_f, val = features.of(group)
        for t in active:
            t.train_round(train_f, features.train_labels(train_f), stop_at, val)
        progress("epoch", group=group.boundary, heads=len(active))

