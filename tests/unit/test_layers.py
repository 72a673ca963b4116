import pytest
import torch

from reloop.config import ModelConfig
from reloop.learn.models import BACKBONES, build_model
from reloop.learn.models.layers import CrossNet, CrossNetV2, FeatureEmbedding, fm_interaction


def test_fm_interaction_hand_case():
    v = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # one sample, two fields, D=2
    # 0.5 * ((v1+v2)^2 - (v1^2+v2^2)) = v1*v2 elementwise = [3, 8]; its sum is <v1, v2> = 11
    assert fm_interaction(v).tolist() == [[3.0, 8.0]]
    three = torch.tensor([[[1.0], [2.0], [3.0]]])  # pairwise products 2 + 3 + 6
    assert fm_interaction(three).item() == 11.0


def test_cross_layer_hand_case():
    net = CrossNet(2, 1)
    with torch.no_grad():
        net.w.copy_(torch.tensor([[0.5, -1.0]]))
        net.b.copy_(torch.tensor([[0.1, 0.2]]))
    # x0 . w = -1.5 ; x1 = x0 * -1.5 + b + x0
    assert torch.allclose(net(torch.tensor([[1.0, 2.0]])), torch.tensor([[-0.4, -0.8]]))


def test_cross_v2_layer_hand_case():
    net = CrossNetV2(2, 1)
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        net.layers[0].bias.copy_(torch.tensor([0.0, 1.0]))
    # W x0 + b = [1, 5] ; x1 = x0 * [1, 5] + x0 = [2, 12]
    assert net(torch.tensor([[1.0, 2.0]])).tolist() == [[2.0, 12.0]]


def test_feature_embedding_uses_field_offsets_and_values():
    emb = FeatureEmbedding([3, 2], dim=1)
    with torch.no_grad():
        emb.table.weight.copy_(torch.arange(5.0).unsqueeze(1))  # row r holds r
    out = emb(torch.tensor([[1, 0], [2, 1]]))
    assert out.squeeze(-1).tolist() == [[1.0, 3.0], [2.0, 4.0]]
    scaled = emb(torch.tensor([[1, 1]]), torch.tensor([[2.0, 0.5]]))
    assert scaled.squeeze(-1).tolist() == [[2.0, 2.0]]


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_returns_logits_and_hidden(name):
    cfg = ModelConfig(backbone=name, embedding_dim=4, mlp_hidden=(16, 8), cross_layers=2)
    model = build_model(cfg, [7, 5, 3])
    logits, hidden = model(torch.tensor([[1, 2, 0], [6, 4, 2]]))
    assert logits.shape == (2,)
    assert hidden.shape == (2, model.hidden_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(hidden).all()


@pytest.mark.parametrize("name", ["lr", "fm"])
def test_shallow_models_logit_is_hidden_sum_plus_bias(name):
    model = build_model(ModelConfig(backbone=name, embedding_dim=3), [4, 4])
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    logits, hidden = model(torch.tensor([[1, 2], [3, 0]]))
    assert torch.allclose(logits, hidden.sum(-1) + model.linear.bias, atol=1e-6)


def test_hidden_sizes():
    card = [7, 5, 3]
    cfg = ModelConfig(embedding_dim=4, mlp_hidden=(16, 8))
    size = {
        n: build_model(cfg.model_copy(update={"backbone": n}), card).hidden_dim for n in BACKBONES
    }
    assert size == {
        "lr": 3,
        "fm": 3 + 4,
        "dnn": 8,
        "wide_deep": 8,
        "deepfm": 8,
        "dcn": 12 + 8,
        "dcnv2": 12 + 8,
    }
    stacked = cfg.model_copy(update={"backbone": "dcnv2", "dcnv2_structure": "stacked"})
    assert build_model(stacked, card).hidden_dim == 8


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match=r"backbone='xdeepfm' is not supported"):
        build_model(ModelConfig.model_construct(backbone="xdeepfm"), [3])
