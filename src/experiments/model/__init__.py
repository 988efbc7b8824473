"""The language model: where its files come from, loading (quantisation, LoRA), tokenization, memory plans."""
