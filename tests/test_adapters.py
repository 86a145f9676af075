"""Family adapters: the perturbed path (`inputs_embeds`) reproduces the stock forward on clean text."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_kd.adapters import BartAdapter, EncoderAdapter, adapter_for

SENTENCES = ["a gripping , funny film", "dull", "the plot is thin but the acting is superb and moving"]


def load(family, which="teacher"):
    tokenizer = AutoTokenizer.from_pretrained(family.tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(getattr(family, which), num_labels=2).eval()
    return tokenizer, model


@pytest.mark.parametrize("family_name", ["bert", "roberta", "bart", "distilbert"])
def test_logits_from_embeddings_equal_logits_from_ids(families, family_name):
    tokenizer, model = load(families[family_name], "student")
    batch = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    adapter = adapter_for(model)
    with torch.no_grad():
        stock = model(**{k: v for k, v in batch.items() if k in adapter.accepted or k == "input_ids"}).logits
        embeds = model.get_input_embeddings()(batch["input_ids"])
        from_embeds = adapter.forward(model, batch, inputs_embeds=embeds).logits
        from_ids = adapter.forward(model, batch).logits
    assert torch.allclose(from_embeds, stock, atol=1e-5)
    assert torch.allclose(from_ids, stock, atol=1e-5)


def test_bart_reads_the_last_eos_and_keeps_both_stacks(bart):
    tokenizer, model = load(bart)
    batch = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    adapter = adapter_for(model)
    assert isinstance(adapter, BartAdapter) and adapter.stacks == ("encoder", "decoder")
    lengths = batch["attention_mask"].sum(dim=1)
    assert adapter.sentence_positions(batch).tolist() == (lengths - 1).tolist()
    result = adapter.forward(model, batch, output_hidden_states=True)
    assert len(result.hidden["encoder"]) == model.config.encoder_layers
    assert len(result.hidden["decoder"]) == model.config.decoder_layers


def test_clean_and_perturbed_batches_share_one_pass(families):
    tokenizer, model = load(families["bert"])
    batch = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    adapter = adapter_for(model)
    assert isinstance(adapter, EncoderAdapter)
    with torch.no_grad():
        single = adapter.forward(model, batch).logits
        double = adapter.forward(model, batch, input_ids=torch.cat([batch["input_ids"]] * 2)).logits
    assert torch.allclose(double[:3], single, atol=1e-5) and torch.allclose(double[3:], single, atol=1e-5)


def test_adapter_is_chosen_by_config_not_by_caller(families):
    assert type(adapter_for(load(families["roberta"])[1])) is EncoderAdapter
    assert type(adapter_for(load(families["bart"])[1])) is BartAdapter
