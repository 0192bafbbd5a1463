"""The encoder's transformer in ONNX Runtime, in fp32 or dynamically quantized to int8.

Encoding the full catalog is the slow step of grounding on CPUs (FACTS 5). sentence-transformers'
own `backend="onnx"` / `"openvino"` go through optimum-onnx and optimum-intel, which pin
transformers below 4.58 and 5.6 (llmrec runs on transformers 5), so llmrec exports the model
itself: torch's ONNX exporter writes the transformer once, onnxruntime's dynamic quantization
makes the int8 copy, and the sentence-transformers model keeps its tokenizer, prompts, pooling
and normalisation, with only its transformer call answered by an onnxruntime session.
Needs the `onnx` extra (onnxruntime, onnx).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers.modeling_outputs import BaseModelOutput

from llmrec.errors import ConfigError

OPSET = 17
# dynamic quantization: int8 weights per output channel; reduce_range keeps AVX2 CPUs without VNNI
# from saturating their u8 x s8 products (onnxruntime's advice), at a little precision elsewhere
INT8 = {"weight_type": "QInt8", "per_channel": True, "reduce_range": True}


def exported_model(model, folder: Path, int8: bool) -> Path:
    """The ONNX file of the sentence-transformers `model`'s transformer in `folder` (fp32, or its
    int8 copy), exported and quantized the first time; both files are written atomically."""
    _onnxruntime()
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        transformer = model[0]
        hf_model = getattr(transformer, _hf_model_name(transformer))
        _atomically(fp32, lambda path: _export(hf_model, transformer.tokenizer.model_input_names, path))
    if not int8:
        return fp32
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = {**INT8, "onnxruntime": _onnxruntime().__version__}  # the quantizer's output may change with it
    name = hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=4).hexdigest()
    quantized = folder / f"model-int8-{name}.onnx"
    if not quantized.exists():
        options = {**INT8, "weight_type": getattr(QuantType, INT8["weight_type"])}
        _atomically(quantized, lambda path: quantize_dynamic(fp32, path, **options))
    return quantized


def use_onnx(model, path: Path, threads: int) -> None:
    """Answer `model`'s transformer calls with an onnxruntime session on `path` (`threads`: 0 for
    onnxruntime's default, every core)."""
    transformer = model[0]
    name = _hf_model_name(transformer)
    setattr(transformer, name, OnnxTransformer(path, getattr(transformer, name).config, threads))


class OnnxTransformer(torch.nn.Module):
    """Stands in for a Hugging Face encoder inside sentence-transformers: takes the tokenizer's
    tensors, returns `last_hidden_state` as a torch tensor."""

    def __init__(self, path: Path, config, threads: int):
        super().__init__()
        onnxruntime = _onnxruntime()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: its graph-optimisation notes are not for users
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.config = config

    def forward(self, **features) -> BaseModelOutput:
        feed = {name: features[name].cpu().numpy() for name in self.inputs}
        (hidden,) = self.session.run(["last_hidden_state"], feed)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))


def _hf_model_name(transformer) -> str:
    """The attribute holding the Hugging Face model: `model` (sentence-transformers 6), `auto_model` (3 to 5)."""
    return "model" if "model" in transformer._modules else "auto_model"


def _export(model, input_names: list[str], path: Path) -> None:
    class Hidden(torch.nn.Module):  # positional inputs in the tokenizer's order, one output
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(input_names, inputs))).last_hidden_state

    # a padded row in the example, so the trace keeps the attention mask (an all-ones mask is skipped)
    example = {
        "attention_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3]),
        "token_type_ids": torch.zeros((2, 8), dtype=torch.long),
    }
    tokens = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            Hidden().eval(),
            tuple(example.get(name, tokens) for name in input_names),
            str(path),
            input_names=list(input_names),
            output_names=["last_hidden_state"],
            dynamic_axes={name: axes for name in [*input_names, "last_hidden_state"]},
            opset_version=OPSET,
            dynamo=False,
        )


def _atomically(path: Path, write) -> None:
    """`write(temporary path)`, then the file renamed into place: an interrupted export leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as temporary:
        target = Path(temporary) / path.name
        write(target)
        shutil.move(target, path)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("encoder.backend=onnx needs onnxruntime and onnx: pip install -e '.[onnx]'") from None
    return onnxruntime
