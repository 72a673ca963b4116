"""Every backbone learns the synthetic click model well above chance."""

import pytest

from reloop.learn.metrics import auc
from reloop.learn.models import BACKBONES
from reloop.learn.train import predict, split_tail, train_model
from tests.support.params import small_params


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbone_trains_to_auc_clearly_above_chance(backbone, small_table):
    params = small_params(model={"backbone": backbone}, train={"max_epochs": 4})
    train_df, test_df = split_tail(small_table, 0.2, time_column=None)
    trained = train_model(params, train_df, progress=False)
    probs, _ = predict(trained.model, trained.encoder.encode(test_df))
    oracle = auc(test_df["y"], test_df["p_true"])
    got = auc(test_df["y"], probs.numpy())
    assert got > 0.65, f"{backbone}: test AUC {got:.3f} (oracle {oracle:.3f})"
    assert got <= oracle + 0.02  # cannot beat the true click probability by more than noise
