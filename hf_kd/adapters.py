"""How hf_kd talks to a model family: the one place that knows architectures.

A family adapter runs a sequence classifier on token ids or on input embeddings and returns its
logits and its layer outputs grouped by stack (`encoder`, and `decoder` for encoder-decoders), and
says where each example's sentence representation is read. The trainers never test the model type;
adding a family (ELECTRA, DeBERTa-v2, ...) is one adapter registered in `ADAPTERS`.

Every call goes through `model(...)`, so that DDP / DeepSpeed / accelerate wrappers see the forward.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import Seq2SeqSequenceClassifierOutput
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from hf_kd.errors import ArgumentError


@dataclass
class ForwardResult:
    logits: torch.Tensor
    # layer outputs per stack, embedding output dropped: {"encoder": (h_1, ..., h_L), ...}
    hidden: dict[str, tuple[torch.Tensor, ...]]
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)  # the embedding output per stack
    attentions: dict[str, tuple[torch.Tensor, ...]] = field(default_factory=dict)  # per layer (B, heads, T, T)
    relations: list[torch.Tensor] | None = None  # queries, keys, values (B, T, H) of one encoder layer


@dataclass
class LayerFeatures:
    """A model's logits and the per-layer features the intermediate-layer losses read."""

    logits: torch.Tensor
    pooled: dict[str, torch.Tensor] | None = None  # stack -> (B, layers, H): mean over the sequence
    sentence: dict[str, torch.Tensor] | None = None  # stack -> (B, layers, H): at the sentence position
    tokens: dict[str, torch.Tensor] | None = None  # stack -> (B, layers, T, H): every token, embeddings first
    attention: dict[str, torch.Tensor] | None = None  # stack -> (B, layers, T, T): heads averaged
    relations: list[torch.Tensor] | None = None  # queries, keys, values (B, T, H) of one layer
    mask: torch.Tensor | None = None  # (B, T): the real tokens of the view these were read on


def _repeat(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """Tile a batch tensor along the batch axis (clean and perturbed inputs share one forward pass)."""
    if tensor.size(0) == size:
        return tensor
    return tensor.repeat(size // tensor.size(0), *([1] * (tensor.dim() - 1)))


class EncoderAdapter:
    """BERT, RoBERTa, DistilBERT, DistilRoBERTa, ELECTRA, ...: the sentence is read at the first token."""

    stacks: tuple[str, ...] = ("encoder",)

    def __init__(self, model: PreTrainedModel) -> None:
        self.config: PretrainedConfig = model.config
        self.accepted = set(inspect.signature(model.forward).parameters)

    def forward(
        self,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        relation_layer: int | None = None,
    ) -> ForwardResult:
        """Run `model` on `input_ids` (default: the batch's) or `inputs_embeds`, with the batch's masks; with
        `relation_layer`, also the queries, keys and values of that encoder layer (hooked on its projections).

        The batch may be a multiple of the batch's size (clean and perturbed stacked); its masks are tiled.
        """
        if inputs_embeds is None and input_ids is None:
            input_ids = batch["input_ids"]
        size = (input_ids if inputs_embeds is None else inputs_embeds).size(0)
        captured: list[torch.Tensor] = []
        hooks = [
            module.register_forward_hook(lambda _, __, output: captured.append(output))
            for module in ([] if relation_layer is None else qkv_modules(model, relation_layer, self.num_layers()))
        ]
        try:
            outputs = model(
                input_ids=input_ids if inputs_embeds is None else None,
                inputs_embeds=inputs_embeds,
                output_hidden_states=output_hidden_states,
                **({"output_attentions": True} if output_attentions else {}),
                **self._extra_inputs(batch, size),
            )
        finally:
            for hook in hooks:
                hook.remove()
        result = ForwardResult(outputs.logits, self._hidden(outputs) if output_hidden_states else {})
        if output_hidden_states:
            result.embeddings = self._embeddings(outputs)
        if output_attentions:
            result.attentions = self._attentions(outputs)
        result.relations = captured[:3] if captured else None
        return result

    def _embeddings(self, outputs) -> dict[str, torch.Tensor]:
        return {"encoder": outputs.hidden_states[0]}

    def _attentions(self, outputs) -> dict[str, tuple[torch.Tensor, ...]]:
        return {"encoder": tuple(outputs.attentions)}

    def _extra_inputs(self, batch: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
        names = ("attention_mask", "token_type_ids")
        return {name: _repeat(batch[name], size) for name in names if name in batch and name in self.accepted}

    def _hidden(self, outputs) -> dict[str, tuple[torch.Tensor, ...]]:
        return {"encoder": tuple(outputs.hidden_states[1:])}

    def sentence_positions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Where the contrastive loss reads each example: the first token ([CLS] / <s>)."""
        input_ids = batch["input_ids"]
        return torch.zeros(input_ids.size(0), dtype=torch.long, device=input_ids.device)

    def num_layers(self) -> dict[str, int]:
        return {"encoder": getattr(self.config, "num_hidden_layers", None) or self.config.n_layers}

    def hidden_sizes(self) -> dict[str, int]:
        return {"encoder": getattr(self.config, "hidden_size", None) or self.config.dim}


class BartAdapter(EncoderAdapter):
    """BART: classification reads the final decoder state at the last end-of-sequence token.

    Stock `BartForSequenceClassification` refuses `inputs_embeds` because it finds that token in
    `input_ids`. The adapter gives the model a forward that also takes `sentence_positions` (taken
    from the clean ids: end-of-sequence tokens are special and never masked) and feeds the decoder
    the (perturbed) sequence shifted right, decoder start token first, as BART does for ids.
    """

    stacks = ("encoder", "decoder")

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__(model)
        if not hasattr(model, "_hf_kd_stock_forward"):
            model._hf_kd_stock_forward = model.forward
            model.forward = types.MethodType(_bart_forward, model)

    def _extra_inputs(self, batch: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
        extra = {"sentence_positions": _repeat(self.sentence_positions(batch), size)}
        if "attention_mask" in batch:
            extra["attention_mask"] = _repeat(batch["attention_mask"], size)
        return extra

    def _hidden(self, outputs) -> dict[str, tuple[torch.Tensor, ...]]:
        return {
            "encoder": tuple(outputs.encoder_hidden_states[1:]),
            "decoder": tuple(outputs.decoder_hidden_states[1:]),
        }

    def _embeddings(self, outputs) -> dict[str, torch.Tensor]:
        return {"encoder": outputs.encoder_hidden_states[0], "decoder": outputs.decoder_hidden_states[0]}

    def _attentions(self, outputs) -> dict[str, tuple[torch.Tensor, ...]]:
        return {"encoder": tuple(outputs.encoder_attentions), "decoder": tuple(outputs.decoder_attentions)}

    def sentence_positions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The last end-of-sequence token of each example."""
        input_ids = batch["input_ids"]
        is_eos = input_ids.eq(self.config.eos_token_id)
        if not bool(is_eos.any(dim=1).all()):
            raise ArgumentError(
                f"A {self.config.model_type} model reads each example at its last end-of-sequence token (id "
                f"{self.config.eos_token_id}), but an example has none: use a tokenizer that adds it (the model's own)."
            )
        positions = torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)
        return torch.where(is_eos, positions, -1).max(dim=1).values

    def num_layers(self) -> dict[str, int]:
        return {"encoder": self.config.encoder_layers, "decoder": self.config.decoder_layers}

    def hidden_sizes(self) -> dict[str, int]:
        return {"encoder": self.config.d_model, "decoder": self.config.d_model}


def _bart_forward(
    self: PreTrainedModel,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    sentence_positions: torch.Tensor | None = None,
    output_hidden_states: bool | None = None,
    **kwargs,
):
    """`BartForSequenceClassification.forward` that also accepts embeddings with `sentence_positions`."""
    if sentence_positions is None:
        return self._hf_kd_stock_forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
    embed = self.get_input_embeddings()
    if inputs_embeds is None:
        inputs_embeds = embed(input_ids)
    start_ids = torch.full((inputs_embeds.size(0), 1), self.config.decoder_start_token_id, device=inputs_embeds.device)
    decoder_inputs_embeds = torch.cat([embed(start_ids).to(inputs_embeds.dtype), inputs_embeds[:, :-1]], dim=1)
    outputs = self.model(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        decoder_inputs_embeds=decoder_inputs_embeds,
        output_hidden_states=output_hidden_states,
        output_attentions=kwargs.get("output_attentions"),
        use_cache=False,
    )
    rows = torch.arange(inputs_embeds.size(0), device=inputs_embeds.device)
    logits = self.classification_head(outputs.last_hidden_state[rows, sentence_positions])
    return Seq2SeqSequenceClassifierOutput(
        logits=logits,
        decoder_hidden_states=outputs.decoder_hidden_states,
        encoder_hidden_states=outputs.encoder_hidden_states,
        decoder_attentions=outputs.decoder_attentions,
        encoder_attentions=outputs.encoder_attentions,
    )


class DecoderOnlyAdapter(EncoderAdapter):
    """Decoder-only classifiers (Llama, Qwen2, Mistral, GPT-2, ...): the sentence is read at the last
    non-padding token, as their classification heads read it, for left and right padding alike."""

    def sentence_positions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch.get("attention_mask")
        input_ids = batch["input_ids"]
        if mask is None:
            return torch.full((input_ids.size(0),), input_ids.size(1) - 1, dtype=torch.long, device=input_ids.device)
        positions = torch.arange(mask.size(1), device=mask.device)
        return (positions * mask.long()).argmax(dim=1)


class MaskedLMAdapter:
    """A masked LM (the adversarial methods' generator): its vocabulary logits on token ids, given the batch's
    masks it accepts (BERT's token types, not DistilBERT's or RoBERTa's)."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.accepted = set(inspect.signature(model.forward).parameters)

    def logits(self, model: nn.Module, input_ids: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        extra = {"attention_mask": batch.get("attention_mask")}
        if "token_type_ids" in batch and "token_type_ids" in self.accepted:
            extra["token_type_ids"] = batch["token_type_ids"]
        return model(input_ids=input_ids, **extra).logits


# the self-attention projections' names by family: BERT / RoBERTa / ELECTRA / ALBERT, DistilBERT, BART / Llama /
# Qwen2
QKV_NAMES = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"), ("q_proj", "k_proj", "v_proj"))
QKV_NAMES += (("query_proj", "key_proj", "value_proj"), ("q", "k", "v"))  # DeBERTa-v2, MPNet


def qkv_modules(model: nn.Module, layer: int, layers: dict[str, int]) -> list[nn.Module]:
    """The query, key and value projections of encoder layer `layer` (0-based): the first list of modules as long
    as the encoder's layers, and in its `layer`-th block the first three projections named as one family names
    them. A family with fused projections (ModernBERT's `Wqkv`) is refused in one line."""
    model = getattr(model, "module", model)  # through a DDP / accelerate wrapper
    count = layers["encoder"]
    blocks = next(
        (
            m
            for name, m in model.named_modules()
            if isinstance(m, nn.ModuleList) and len(m) == count and "decoder" not in name
        ),
        None,
    )
    named = dict(blocks[layer].named_modules()) if blocks is not None else {}
    for names in QKV_NAMES:
        found = [next((m for n, m in named.items() if n.split(".")[-1] == part), None) for part in names]
        if all(isinstance(m, nn.Linear) for m in found):
            return found
    raise ArgumentError(
        f"A {model.config.model_type} model's query, key and value projections were not found in its layer {layer + 1} "
        "(fused or unusual names): the self-attention relation term (`--method minilm`) cannot read it; use another "
        "family, or a method without `relation`."
    )


ADAPTERS: dict[str, type[EncoderAdapter]] = {"bart": BartAdapter}


def is_decoder_only(config: PretrainedConfig) -> bool:
    """A family with a causal LM and no masked LM that is not encoder-decoder: GPT-2, Llama, Qwen2, ..."""
    return (
        config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        and not getattr(config, "is_encoder_decoder", False)
    )


def adapter_for(model: PreTrainedModel) -> EncoderAdapter:
    """The adapter of a model's family: BART's, decoder-only classifiers', or `EncoderAdapter` for the encoders."""
    if model.config.model_type in ADAPTERS:
        return ADAPTERS[model.config.model_type](model)
    return (DecoderOnlyAdapter if is_decoder_only(model.config) else EncoderAdapter)(model)


# families whose position ids start after the padding index (RoBERTa counts from pad_token_id + 1)
POSITIONS_AFTER_PADDING = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text"}


def position_limit(config: PretrainedConfig) -> int | None:
    """The longest input (in tokens) a model's position embeddings cover; None when it has no such limit."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return None
    if config.model_type in POSITIONS_AFTER_PADDING:
        limit -= (config.pad_token_id or 0) + 1
    return limit
