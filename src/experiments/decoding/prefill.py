"""The prefill of one large generation batch in length-sorted chunks, joined into the KV cache generate() goes on from.

One left-padded batch of prompts of very different lengths spends its prefill on pad tokens: 1,000 WikiSQL prompts
of 81,130 tokens pad to 133,000, and on an H100 their prefill took 3.96 s in one forward against 2.74 s in 8 slices
of the length-sorted rows (`benchmarks/profile_generation.py`). Here each slice is prefilled on its own, with every
prompt but its last token and the positions generate() gives it (counted from each row's first real token); its keys
and values are padded on the left to the batch's longest prompt and joined layer by layer, each layer freed as it is
joined. generate() then runs every row's last prompt token and decodes as it would have. The pad positions hold zeros
rather than the keys of pad tokens: the attention mask gives them no weight either way.

The joined layers that keep every key (full attention, or a window longer than prompt and answer: Mistral-7B v0.1's
4,096) are `PreallocatedLayer`s: their keys and values are views of buffers sized once for the prompt and every token
generate() may add, so a decode step writes its position in place, where transformers' DynamicLayer concatenates,
copying the whole cache every step (1,000 Mistral prompts of ~150 positions: ~20 GB read and again written a step).
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache, GenerationMixin
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

MAX_PREFILL_CHUNKS = 8  # the profile's largest measured split; each chunk is one more forward's launches
# the keyword that hands a model and generate() a KV cache: `cache` from transformers 5.2x (`past_key_values` is
# deprecated there), `past_key_values` before (the GPU image's 5.17)
CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters \
    else "past_key_values"


def prefill_chunk_count(rows: int, min_rows: int) -> int:
    """How many slices a batch of `rows` prompts is prefilled in: at most MAX_PREFILL_CHUNKS, each of at least
    `min_rows` rows, so small batches keep one forward (1: no chunking; `min_rows` <= 0 turns chunking off)."""
    if min_rows <= 0:
        return 1
    return max(1, min(MAX_PREFILL_CHUNKS, rows // min_rows))


def joinable(model, longest: int) -> bool:
    """Whether the model's dynamic cache can be joined from slices: only full-attention layers, and sliding-window
    layers whose window holds the whole prompt (a window that dropped keys would need each row's own count), and a
    rotary embedding that does not depend on the batch's length."""
    config = getattr(model, "config", None)
    if config is None or _length_scaled_rope(config):
        return False
    for layer in DynamicCache(config=config).layers:
        if type(layer) is DynamicSlidingWindowLayer:
            if layer.sliding_window <= longest:
                return False
        elif type(layer) is not DynamicLayer:
            return False
    return True


def _length_scaled_rope(config) -> bool:
    """Whether the model's rotary embedding rescales with the longest position of a forward pass ("dynamic" NTK,
    "longrope"): a slice's keys would then differ from the whole batch's."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    found = [getattr(text, "rope_parameters", None), getattr(text, "rope_scaling", None)]
    parameters = [p for p in found if isinstance(p, dict)]
    parameters += [value for p in parameters for value in p.values() if isinstance(value, dict)]  # per layer type
    return any(p.get("rope_type", p.get("type")) in ("dynamic", "longrope") for p in parameters)


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of [rows, heads, capacity, dim] buffers of which the first
    `length` positions are filled: `update` writes the new positions in place and returns the grown views, instead of
    DynamicLayer's torch.cat of the whole cache. Anything beyond the buffers (more tokens than their capacity, or
    keys replaced by another cache operation: beam reordering, cropping, row selection) falls back to DynamicLayer."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        super().__init__()
        self.buffers: tuple[torch.Tensor, torch.Tensor] | None = (keys, values)
        self.dtype, self.device = keys.dtype, keys.device
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args,
               **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._views_of_buffers() or self.keys.shape[-2] + key_states.shape[-2] > self.buffers[0].shape[-2]:
            self.buffers = None
            return super().update(key_states, value_states, *args, **kwargs)
        keys, values = self.buffers
        length = self.keys.shape[-2]
        end = length + key_states.shape[-2]
        keys[:, :, length:end] = key_states
        values[:, :, length:end] = value_states
        self.keys, self.values = keys[:, :, :end], values[:, :, :end]
        return self.keys, self.values

    def reset(self) -> None:
        self.buffers = None  # transformers 5.2x drops the keys here; 5.17 zeroes them
        super().reset()

    def _views_of_buffers(self) -> bool:
        if self.buffers is None or not self.is_initialized or self.keys is None or self.values is None:
            return False
        keys, values = self.buffers
        return self.keys.data_ptr() == keys.data_ptr() and self.values.data_ptr() == values.data_ptr() and \
            self.keys.shape[:2] == keys.shape[:2] and self.keys.stride() == keys.stride()


@torch.inference_mode()
def chunked_prefill(model, input_ids: torch.Tensor, attention: torch.Tensor, chunks: int,
                    new_tokens: int | None = 0) -> DynamicCache | None:
    """The KV cache of every row's prompt but its last token, prefilled in `chunks` contiguous slices of the
    left-padded batch (`input_ids` and `attention`, as generate gets them; rows sorted longest first pad least), for
    generate(**{CACHE_ARGUMENT: ...}), with room for the last prompt token and `new_tokens` more in the layers that keep
    every key (PreallocatedLayer; None: DynamicLayers, which concatenate). None where one prefill is as good or the
    cache cannot be joined (`joinable`)."""
    rows, longest = input_ids.shape
    size = -(-rows // max(1, chunks))
    slices = [(start, min(rows, start + size)) for start in range(0, rows, size)]
    lengths = attention.sum(dim=1).tolist()
    spans = [int(max(lengths[start:end])) for start, end in slices]
    if len(slices) < 2 or min(spans) < 2 or not joinable(model, longest):
        return None
    caches = []
    for (start, end), span in zip(slices, spans, strict=True):
        ids = input_ids[start:end, longest - span:longest - 1]
        mask = attention[start:end, longest - span:longest - 1]
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as generate counts them
        cache = DynamicCache(config=model.config)
        model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
              **{CACHE_ARGUMENT: cache})
        caches.append(cache)
    joined = DynamicCache(config=model.config)
    for index in range(len(caches[0].layers)):
        preallocated = new_tokens is not None and _never_drops(joined.layers[index], longest + new_tokens)
        capacity = longest - 1 + (1 + new_tokens if preallocated else 0)
        keys = _left_padded_rows([cache.layers[index].keys for cache in caches], longest - 1, capacity)
        values = _left_padded_rows([cache.layers[index].values for cache in caches], longest - 1, capacity)
        for cache in caches:  # this layer's slices are joined: free them before the next layer is built
            cache.layers[index].keys = cache.layers[index].values = None
        if preallocated:
            sliding = joined.layers[index].is_sliding
            joined.layers[index] = PreallocatedLayer(keys, values, longest - 1)
            joined.layers[index].is_sliding = sliding  # the mask of a sliding layer is still built with its window
        else:
            joined.update(keys, values, index)
        del keys, values
    return joined


def _never_drops(layer, positions: int) -> bool:
    """Whether a joined cache layer keeps every one of `positions` keys: a full-attention layer, or a sliding-window
    layer whose window is longer (Mistral-7B v0.1's 4,096). Such a layer can be a PreallocatedLayer: its mask sizes
    are DynamicLayer's, and the sliding mask still applies the window by position."""
    if type(layer) is DynamicSlidingWindowLayer:
        return layer.sliding_window > positions
    return type(layer) is DynamicLayer


def _left_padded_rows(parts: list[torch.Tensor], length: int, capacity: int) -> torch.Tensor:
    """[rows, heads, positions, dim] slices, each padded with zeros on the left to `length`, stacked by rows, in a
    buffer of `capacity` >= `length` positions (the rest for the positions still to come)."""
    first = parts[0]
    with torch.inference_mode(False):  # a normal tensor: PreallocatedLayer writes into it, in inference mode or not
        out = first.new_zeros((sum(part.shape[0] for part in parts), first.shape[1], capacity, first.shape[3]))
    row = 0
    for part in parts:
        out[row:row + part.shape[0], :, length - part.shape[2]:length] = part
        row += part.shape[0]
    return out
