"""The SSIM map (inspect_ad/ops/ssim.py)."""
import numpy as np
import torch
from skimage.metrics import structural_similarity

from inspect_ad.ops.ssim import ssim_map


def test_ssim_matches_scikit_image_in_the_interior():
    rng = np.random.default_rng(0)
    a = rng.random((40, 40))
    b = np.clip(a + 0.1 * rng.standard_normal((40, 40)), 0, 1)
    _, ref = structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, full=True)
    ours = ssim_map(torch.tensor(a)[None, None], torch.tensor(b)[None, None])[0].numpy()
    np.testing.assert_allclose(ours[6:-6, 6:-6], ref[6:-6, 6:-6], atol=1e-6)
