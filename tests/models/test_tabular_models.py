"""The tabular models of MemAE §4.3 (inspect_ad/models/tabular.py)."""
import pytest
import torch

from inspect_ad.models import create_model, get_spec, list_models, make_config


@pytest.mark.parametrize("name", ["ae_fc", "memae_fc", "memae_fc_nonspar"])
def test_tabular_models_registered_with_tiny_variant(name):
    spec = get_spec(name)
    assert spec.family == "tabular" and name in list_models("tabular")
    cfg = make_config(name, **spec.tiny)
    out = create_model(name, cfg)(spec.example_input(cfg))
    assert out.reconstruction.shape == (4, cfg.in_features)
    if cfg.use_memory:
        w = out.weights[0]
        assert w.shape == (4, cfg.memory.slots) and torch.allclose(w.sum(1), torch.ones(4))
    else:
        assert out.weights == []


def test_paper_architecture_and_variants():
    memae = create_model("memae_fc")
    linears = [m for m in memae.encoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(118, 60), (60, 30), (30, 10), (10, 3)]
    assert memae.memory.slots.shape == (50, 3) and memae.config.entropy_weight == 0.0002
    nonspar = make_config("memae_fc_nonspar")
    assert nonspar.memory.shrink_threshold == 0 and nonspar.entropy_weight == 0
