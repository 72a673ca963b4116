import math

import pytest
import torch
import torch.nn.functional as F

from reloop.learn.losses import (
    LOSSES,
    ce_loss,
    get_loss,
    kd_loss,
    kd_loss_with_logits,
    reloop_loss,
    reloop_loss_with_logits,
    self_correction,
)

# Four impressions: two clicks, two non-clicks; the new model wins on the 1st and 3rd.
Y = torch.tensor([1.0, 1.0, 0.0, 0.0])
Y_LAST = torch.tensor([0.6, 0.6, 0.3, 0.3])
Y_HAT = torch.tensor([0.7, 0.5, 0.2, 0.4])
CE = [-math.log(0.7), -math.log(0.5), -math.log(0.8), -math.log(0.6)]


def test_self_correction_is_zero_exactly_where_new_prediction_beats_y_last():
    sc = self_correction(Y_HAT, Y, Y_LAST)
    assert torch.allclose(sc, torch.tensor([0.0, 0.1, 0.0, 0.1]), atol=1e-7)
    # a tie is not a shortfall
    assert (
        self_correction(torch.tensor([0.6]), torch.tensor([1.0]), torch.tensor([0.6])).item() == 0
    )


def test_reloop_loss_hand_computed():
    expected = (
        0.5 * (0.1 + 0.1) / 4 + 0.5 * sum(CE) / 4
    )  # alpha * mean(L_sc) + (1-alpha) * mean(L_ce)
    assert reloop_loss(Y_HAT, Y, Y_LAST, alpha=0.5).item() == pytest.approx(expected, rel=1e-6)
    assert reloop_loss(Y_HAT, Y, Y_LAST, alpha=1.0).item() == pytest.approx(0.05, rel=1e-6)


def test_alpha_zero_is_cross_entropy():
    assert reloop_loss(Y_HAT, Y, Y_LAST, 0.0).item() == pytest.approx(sum(CE) / 4, rel=1e-6)
    assert torch.equal(reloop_loss(Y_HAT, Y, Y_LAST, 0.0), F.binary_cross_entropy(Y_HAT, Y))
    assert torch.equal(kd_loss(Y_HAT, Y, Y_LAST, 0.0), ce_loss(Y_HAT, Y))


def test_kd_loss_hand_computed():
    soft = [
        -(0.6 * math.log(0.7) + 0.4 * math.log(0.3)),
        -(0.6 * math.log(0.5) + 0.4 * math.log(0.5)),
        -(0.3 * math.log(0.2) + 0.7 * math.log(0.8)),
        -(0.3 * math.log(0.4) + 0.7 * math.log(0.6)),
    ]
    expected = 0.25 * sum(soft) / 4 + 0.75 * sum(CE) / 4
    assert kd_loss(Y_HAT, Y, Y_LAST, 0.25).item() == pytest.approx(expected, rel=1e-6)


def test_gradients_flow_through_both_terms():
    y_hat = Y_HAT.clone().requires_grad_(True)
    reloop_loss(y_hat, Y, Y_LAST, alpha=1.0).backward()
    # d/dy_hat of mean(L_sc): -1/4 where a click was under-predicted, +1/4 for a non-click over
    assert torch.allclose(y_hat.grad, torch.tensor([0.0, -0.25, 0.0, 0.25]))
    y_hat.grad = None
    reloop_loss(y_hat, Y, Y_LAST, alpha=0.5).backward()
    ce_grad = torch.tensor([-1 / 0.7, -1 / 0.5, 1 / 0.8, 1 / 0.6]) / 4
    assert torch.allclose(y_hat.grad, 0.5 * torch.tensor([0.0, -0.25, 0.0, 0.25]) + 0.5 * ce_grad)


def test_numerically_safe_at_probabilities_zero_and_one():
    y_hat = torch.tensor([0.0, 1.0, 0.0, 1.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    for alpha in (0.0, 0.5, 1.0):
        y_hat.grad = None
        loss = reloop_loss(y_hat, y, torch.tensor([0.5, 0.5, 0.5, 0.5]), alpha)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(y_hat.grad).all()
    # each log term is clamped at -100: two confidently wrong samples cost 100 each
    assert reloop_loss(y_hat, y, Y_LAST, 0.0).item() == pytest.approx(50.0)
    assert torch.isfinite(kd_loss(y_hat, y, torch.tensor([0.0, 1.0, 1.0, 0.0]), 0.5))


def test_logit_forms_match_probability_forms():
    logits = torch.logit(Y_HAT)
    for alpha in (0.0, 0.3, 1.0):
        assert reloop_loss_with_logits(logits, Y, Y_LAST, alpha).item() == pytest.approx(
            reloop_loss(Y_HAT, Y, Y_LAST, alpha).item(), rel=1e-5
        )
        assert kd_loss_with_logits(logits, Y, Y_LAST, alpha).item() == pytest.approx(
            kd_loss(Y_HAT, Y, Y_LAST, alpha).item(), rel=1e-5
        )
    # stable at extreme logits where sigmoid saturates
    big = torch.tensor([200.0, -200.0, 50.0, -50.0])
    assert torch.isfinite(reloop_loss_with_logits(big, Y, Y_LAST, 0.5))


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_out_of_range_is_named(alpha):
    with pytest.raises(ValueError, match=r"alpha=.* is out of range"):
        reloop_loss(Y_HAT, Y, Y_LAST, alpha)
    with pytest.raises(ValueError, match=r"alpha="):
        kd_loss_with_logits(Y_HAT, Y, Y_LAST, alpha)


def test_unknown_loss_is_named():
    assert set(LOSSES) == {"ce", "kd", "reloop"}
    with pytest.raises(ValueError, match=r"loss='focal' is not supported; expected one of"):
        get_loss("focal")


def test_mask_drops_the_extra_term_on_masked_rows_hand_computed():
    # rows 2 and 4 were served by the bootstrap policy: cross-entropy alone there
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    sc = [0.0, 0.1, 0.0, 0.1]
    rows = [0.5 * sc[0] + 0.5 * CE[0], CE[1], 0.5 * sc[2] + 0.5 * CE[2], CE[3]]
    got = reloop_loss(Y_HAT, Y, Y_LAST, 0.5, mask=mask).item()
    assert got == pytest.approx(sum(rows) / 4, rel=1e-6)
    assert reloop_loss_with_logits(torch.logit(Y_HAT), Y, Y_LAST, 0.5, mask=mask).item() == (
        pytest.approx(got, rel=1e-5))
    # a mask of ones is the plain loss; a mask of zeros is cross-entropy
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert reloop_loss(Y_HAT, Y, Y_LAST, 0.5, mask=ones).item() == pytest.approx(
        reloop_loss(Y_HAT, Y, Y_LAST, 0.5).item(), rel=1e-6)
    assert kd_loss(Y_HAT, Y, Y_LAST, 0.5, mask=zeros).item() == pytest.approx(sum(CE) / 4,
                                                                              rel=1e-6)


def test_weight_gives_the_weighted_mean_hand_computed():
    w = torch.tensor([1.0, 0.5, 0.25, 0.25])
    rows = [0.5 * s + 0.5 * c for s, c in zip([0.0, 0.1, 0.0, 0.1], CE, strict=True)]
    expected = sum(wi * r for wi, r in zip([1.0, 0.5, 0.25, 0.25], rows, strict=True)) / 2.0
    assert reloop_loss(Y_HAT, Y, Y_LAST, 0.5, weight=w).item() == pytest.approx(expected,
                                                                                rel=1e-6)
    logits = torch.logit(Y_HAT)
    assert reloop_loss_with_logits(logits, Y, Y_LAST, 0.5, weight=w).item() == pytest.approx(
        expected, rel=1e-5)
    ce_w = sum(wi * c for wi, c in zip([1.0, 0.5, 0.25, 0.25], CE, strict=True)) / 2.0
    assert LOSSES["ce"](logits, Y, None, 0.0, weight=w).item() == pytest.approx(ce_w, rel=1e-5)
    # equal weights are the plain mean
    assert reloop_loss(Y_HAT, Y, Y_LAST, 0.5, weight=torch.full((4,), 3.0)).item() == (
        pytest.approx(reloop_loss(Y_HAT, Y, Y_LAST, 0.5).item(), rel=1e-6))
    with pytest.raises(ValueError, match="sum to zero"):
        reloop_loss(Y_HAT, Y, Y_LAST, 0.5, weight=torch.zeros(4))
