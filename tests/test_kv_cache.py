"""The KV cache goes in and out under the name the installed transformers uses."""
import inspect
import warnings

import torch

from attractor.models.kv_cache import cache_kwargs, output_cache


def test_cached_decoding_uses_the_installed_name_without_deprecation_warnings(random_model):
    model, tok = random_model
    ids = torch.tensor([tok("Every wumpus is a rorpus.")["input_ids"]])
    for module in (model, model.get_decoder()):
        (name,) = cache_kwargs(module, None)
        assert name in inspect.signature(type(module).forward).parameters
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            with torch.no_grad():
                first = module(input_ids=ids[:, :-1], use_cache=True)
                cache = output_cache(first)
                step = module(input_ids=ids[:, -1:], use_cache=True, **cache_kwargs(module, cache))
                full = module(input_ids=ids, use_cache=False)
        assert output_cache(step).get_seq_length() == ids.shape[1]
        a = step.logits[:, -1] if hasattr(step, "logits") else step.last_hidden_state[:, -1]
        b = full.logits[:, -1] if hasattr(full, "logits") else full.last_hidden_state[:, -1]
        assert torch.allclose(a, b, atol=1e-4)
