"""Training throughput: reloop vs DeepCTR-Torch on the same data, sizes and epochs, in one run.

Setting: a synthetic 1M-row table with 10 categorical fields
(:func:`reloop.synthetic.make_ctr_table`), split 90/10 in row order; DeepFM and DCN with
embedding 10, MLP 400x3, batch 4096, Adam lr 1e-3, a fixed number of epochs, no validation
during training. Both libraries get identical integer ids per field (reloop's hashing encoder is
applied once; DeepCTR-Torch receives the per-field indices with ``vocabulary_size`` equal to
reloop's bucket count), so the embedding tables have the same shape.

Same model, same objective:

* the peer runs in its lightest configuration: no metrics during ``fit`` (``verbose=0``), L2
  regularisation off (reloop uses none);
* its MLP layers are re-initialised with PyTorch's default, as reloop's are: its own MLP init,
  N(0, init_std=1e-4), starves the deep part (``docs/measurements.md``, "Training throughput");
* its ``fit`` hard-codes a *summed* BCE; it gets the mean BCE reloop uses. With Adam the two
  differ only through ``eps``, which damps rare embedding rows under the mean;
* DeepCTR-Torch's DCN has an extra first-order (linear) term; reloop's DCN, as in the paper, has
  none.

Timing is interleaved because these machines are noisy: every epoch is cut into ``--chunks``
slices, and each slice is trained by reloop and then by DeepCTR-Torch (their own ``fit``, one
epoch over the slice), so both see the same background load. Only training is timed, as wall
time and process CPU time; data preparation and evaluation are not.

    python -m benchmarks.train_throughput [--rows 1000000] [--epochs 4] [--chunks 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import write_result

CARDINALITIES = (1000, 500, 200, 100, 50, 20, 10, 5000, 2000, 300)
TARGET_RATIO = 1.5
TARGET_AUC_GAP = 0.002


def _reloop_params(backbone: str, epochs: int, seed: int):
    from reloop.config import params_from_dict

    return params_from_dict(
        {
            "features": {
                "fields": [
                    {"name": f"f{i}", "buckets": 2 * c + 1} for i, c in enumerate(CARDINALITIES)
                ],
                "user_field": "f0",
            },
            "model": {
                "backbone": backbone,
                "embedding_dim": 10,
                "mlp_hidden": [400, 400, 400],
                "cross_layers": 3,
            },
            "train": {
                "loss": "ce",
                "alpha": 0.0,
                "batch_size": 4096,
                "learning_rate": 1e-3,
                "max_epochs": epochs,
                "seed": seed,
            },
        }
    )


def _mean_bce(y_pred, y_true, reduction="mean"):
    """BCE averaged over the batch, whatever reduction DeepCTR-Torch's fit asks for."""
    return F.binary_cross_entropy(y_pred, y_true)


def _deepctr_model(backbone: str, seed: int):
    from deepctr_torch.inputs import SparseFeat
    from deepctr_torch.models import DCN, DeepFM

    columns = [
        SparseFeat(f"f{i}", vocabulary_size=2 * c + 1, embedding_dim=10)
        for i, c in enumerate(CARDINALITIES)
    ]
    common = dict(
        dnn_hidden_units=(400, 400, 400),
        l2_reg_linear=0.0,
        l2_reg_embedding=0.0,
        init_std=1e-4,
        seed=seed,
        device="cpu",
    )
    if backbone == "deepfm":
        model = DeepFM(columns, columns, **common)
    else:
        model = DCN(
            columns,
            columns,
            cross_num=3,
            cross_parameterization="vector",
            l2_reg_cross=0.0,
            **common,
        )
    for module in model.dnn.modules():
        if isinstance(module, torch.nn.Linear):
            module.reset_parameters()
    model.compile("adam", _mean_bce, metrics=[])
    return model


class _Clock:
    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc):
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def compare(backbone, train_df, test_df, epochs, chunks, seed):
    """Train both libraries in interleaved slices; return their throughput and test AUC."""
    from reloop.learn.metrics import auc
    from reloop.learn.models import build_model
    from reloop.learn.train import predict, to_training_data
    from reloop.learn.trainer import Trainer

    params = _reloop_params(backbone, epochs, seed)
    from reloop.learn.features import FeatureEncoder

    encoder = FeatureEncoder.from_config(params.features)
    train = to_training_data(train_df, encoder, params.features, need_y_last=False)
    test_enc = encoder.encode(test_df)
    train_idx, test_idx = train.features.indices.numpy(), test_enc.indices.numpy()
    train_y = train.y.numpy()
    names = [f"f{i}" for i in range(len(CARDINALITIES))]

    torch.manual_seed(seed)
    ours = build_model(params.model, encoder.cardinalities)
    trainer = Trainer(ours, params.train)
    peer = _deepctr_model(backbone, seed)

    clock_ours, clock_peer = _Clock(), _Clock()
    rng = np.random.default_rng(seed)
    n = len(train)
    for _ in range(epochs):
        for part in np.array_split(rng.permutation(n), chunks):
            rows = torch.from_numpy(part)
            with clock_ours:
                trainer.train_epoch(train.take(rows), progress=False)
            x = {name: train_idx[part, i] for i, name in enumerate(names)}
            with clock_peer:
                peer.fit(x, train_y[part], batch_size=4096, epochs=1, verbose=0, shuffle=True)

    ours_p, _ = predict(ours, test_enc)
    peer_p = peer.predict(
        {name: test_idx[:, i] for i, name in enumerate(names)}, batch_size=65536
    ).ravel()
    y = test_df["y"].to_numpy()
    samples = n * epochs

    def side(clock, probs):
        return {
            "seconds": clock.wall,
            "cpu_seconds": clock.cpu,
            "samples_per_s": samples / clock.wall,
            "test_auc": auc(y, probs),
        }

    r, d = side(clock_ours, ours_p.numpy()), side(clock_peer, peer_p)
    return {
        "reloop": r,
        "deepctr_torch": d,
        "ratio": r["samples_per_s"] / d["samples_per_s"],
        "cpu_ratio": d["cpu_seconds"] / r["cpu_seconds"],
        "auc_gap": abs(r["test_auc"] - d["test_auc"]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--chunks", type=int, default=5, help="interleaved slices per epoch")
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--models", default="deepfm,dcn")
    args = ap.parse_args(argv)

    from reloop.synthetic import make_ctr_table

    torch.set_num_threads(os.cpu_count() or 1)
    df = make_ctr_table(args.rows, CARDINALITIES, seed=args.seed)
    n_train = int(args.rows * 0.9)
    train_df, test_df = df.head(n_train), df.tail(args.rows - n_train)

    results = {}
    for backbone in args.models.split(","):
        res = compare(backbone, train_df, test_df, args.epochs, args.chunks, args.seed)
        results[backbone] = res
        r, d = res["reloop"], res["deepctr_torch"]
        print(
            f"{backbone:7s} reloop {r['samples_per_s']:8.0f} samples/s (AUC {r['test_auc']:.4f})"
            f" | deepctr-torch {d['samples_per_s']:8.0f} samples/s (AUC {d['test_auc']:.4f})"
            f" | ratio {res['ratio']:.2f}x wall, {res['cpu_ratio']:.2f}x cpu"
            f" | AUC gap {res['auc_gap']:.4f}",
            flush=True,
        )

    payload = {
        "command": "python -m benchmarks.train_throughput " + " ".join(argv or []),
        "rows": args.rows,
        "train_rows": n_train,
        "epochs": args.epochs,
        "chunks": args.chunks,
        "seed": args.seed,
        "batch_size": 4096,
        "embedding_dim": 10,
        "mlp_hidden": [400, 400, 400],
        "cardinalities": list(CARDINALITIES),
        "cores": os.cpu_count(),
        "models": results,
        "targets": {"ratio_vs_deepctr": TARGET_RATIO, "auc_gap": TARGET_AUC_GAP},
    }
    if "deepfm" in results:
        payload["ratio_vs_deepctr"] = results["deepfm"]["ratio"]
        payload["auc_gap"] = results["deepfm"]["auc_gap"]
        payload["meets_target"] = bool(
            payload["ratio_vs_deepctr"] >= TARGET_RATIO and payload["auc_gap"] <= TARGET_AUC_GAP
        )
    write_result("train_throughput", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
