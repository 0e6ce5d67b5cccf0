"""The one-class image networks of MemAE §4.1 (inspect_ad/models/oneclass.py)."""
from __future__ import annotations

import math

import pytest
import torch

from inspect_ad.models import create_model, get_spec, list_models
from inspect_ad.models.oneclass import decode_slots
from inspect_ad.models.outputs import ReconstructionOutput

ONECLASS_MODELS = list_models("oneclass")


@pytest.mark.parametrize("name", ONECLASS_MODELS)
def test_tiny_models_reconstruct_their_input_shape(name):
    spec = get_spec(name)
    model = create_model(name, **spec.tiny)
    x = spec.example_input(model.config)
    out = model(x)
    assert isinstance(out, ReconstructionOutput)
    assert out.reconstruction.shape == x.shape
    if model.config.use_memory:
        assert torch.allclose(out.weights[0].sum(-1), torch.ones(len(x)), atol=1e-5)
    else:
        assert out.weights == []


def test_paper_networks_match_section_4_1():
    mnist, cifar = create_model("memae_mnist"), create_model("memae_cifar10")
    assert mnist.memory.num_slots == 100 and cifar.memory.num_slots == 500
    assert mnist.config.encoder == ((1, 2, 16), (3, 2, 32), (3, 2, 64))
    assert mnist.latent_shape == (64, 4, 4) and cifar.latent_shape == (256, 2, 2)
    assert mnist(torch.rand(2, 1, 28, 28)).reconstruction.shape == (2, 1, 28, 28)
    assert cifar(torch.rand(2, 3, 32, 32)).reconstruction.shape == (2, 3, 32, 32)
    assert isinstance(mnist.decoder[-1], torch.nn.ConvTranspose2d)  # no BN/ReLU after the last layer
    nonspar, ae = create_model("memae_mnist_nonspar"), create_model("ae_mnist")
    assert nonspar.memory.shrink_threshold == 0 and nonspar.config.entropy_weight == 0
    assert ae.memory is None


def test_decode_slots_gives_one_image_per_slot():
    model = create_model("memae_mnist", **get_spec("memae_mnist").tiny)
    assert decode_slots(model, [0, 3]).shape == (2, 1, 16, 16)


def test_position_layout_addresses_each_feature_vector():
    model = create_model("memae_mnist", **{**get_spec("memae_mnist").tiny, "memory_layout": "position"})
    c, h, w = model.latent_shape
    assert model.memory.dim == c
    out = model(torch.rand(2, 1, 16, 16))
    assert out.weights[0].shape == (2 * h * w, 8) and out.reconstruction.shape == (2, 1, 16, 16)
    assert decode_slots(model, [1]).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="image, position"):
        create_model("memae_mnist", memory_layout="pixel")


@pytest.mark.parametrize("name", ["memae_mnist", "memae3d"])
def test_logit_scale_lifts_the_cosine_cap_on_one_slot(name):
    """Cosines in [-1, 1] cap a softmax weight at e²/(e² + N − 1); a logit scale lets one slot win."""
    weights = {}
    for scale in (1.0, 10.0):
        memory = create_model(name, **{**get_spec(name).tiny, "memory_slots": 8, "logit_scale": scale,
                                         "shrink_threshold": 0.0}).memory   # the softmax alone
        with torch.no_grad():
            memory.slots.copy_(torch.eye(8, memory.dim))       # orthonormal: cosine 1 with slot 0, 0 elsewhere
        weights[scale] = memory(memory.slots[:1].clone()).weights[0, 0].item()
    assert weights[1.0] == pytest.approx(math.e / (math.e + 7), abs=1e-5)
    assert weights[10.0] > 0.999
