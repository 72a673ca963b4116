"""Training throughput: reloop vs DeepCTR-Torch on the same data, sizes and epochs, in one run.

Setting (issue 3): a synthetic 1M-row table with 10 categorical fields
(:func:`reloop.synthetic.make_ctr_table`), split 90/10 in row order; DeepFM and DCN with
embedding 10, MLP 400x3, batch 4096, Adam lr 1e-3, a fixed number of epochs, no validation
during training. Both libraries get identical integer ids per field (reloop's hashing encoder is
applied once; DeepCTR-Torch receives the per-field indices with ``vocabulary_size`` equal to
reloop's bucket count), so the embedding tables have the same shape.

The peer runs in its lightest configuration: no metrics during ``fit`` (``verbose=0``), L2
regularisation off (reloop uses none), so its per-step cost is only its data loader, model and
optimiser. DeepCTR-Torch's DCN also has a first-order (linear) term; reloop's DCN, as in the
paper, does not.

Timed: the training loop only (reloop's ``fit``, DeepCTR-Torch's ``fit``), not data preparation
or evaluation. Reported: samples/s of each, their ratio, and test AUC of each.

    python -m benchmarks.train_throughput [--rows 1000000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from benchmarks.common import write_result

CARDINALITIES = (1000, 500, 200, 100, 50, 20, 10, 5000, 2000, 300)
TARGET_RATIO = 1.5
TARGET_AUC_GAP = 0.002


def _reloop_params(backbone: str, epochs: int, seed: int):
    from reloop.config import params_from_dict

    return params_from_dict({
        "features": {
            "fields": [{"name": f"f{i}", "buckets": 2 * c + 1} for i, c in enumerate(CARDINALITIES)],
            "user_field": "f0",
        },
        "model": {"backbone": backbone, "embedding_dim": 10, "mlp_hidden": [400, 400, 400],
                  "cross_layers": 3},
        "train": {"loss": "ce", "alpha": 0.0, "batch_size": 4096, "learning_rate": 1e-3,
                  "max_epochs": epochs, "seed": seed},
    })


def run_reloop(backbone, train_df, test_df, epochs, seed):
    from reloop.metrics import auc
    from reloop.train import predict, train_model

    params = _reloop_params(backbone, epochs, seed)
    trained = train_model(params, train_df, None, progress=False)
    probs, _ = predict(trained.model, trained.encoder.encode(test_df))
    return {
        "seconds": trained.result.train_seconds,
        "samples_per_s": trained.result.samples_per_second,
        "test_auc": auc(test_df["y"].to_numpy(), probs.numpy()),
    }


def run_deepctr(backbone, train_idx, train_y, test_idx, test_y, epochs, seed):
    from deepctr_torch.inputs import SparseFeat
    from deepctr_torch.models import DCN, DeepFM

    from reloop.metrics import auc

    columns = [SparseFeat(f"f{i}", vocabulary_size=2 * c + 1, embedding_dim=10)
               for i, c in enumerate(CARDINALITIES)]
    common = dict(dnn_hidden_units=(400, 400, 400), l2_reg_linear=0.0, l2_reg_embedding=0.0,
                  init_std=1e-4, seed=seed, device="cpu")
    if backbone == "deepfm":
        model = DeepFM(columns, columns, **common)
    else:
        model = DCN(columns, columns, cross_num=3, cross_parameterization="vector",
                    l2_reg_cross=0.0, **common)
    model.compile("adam", "binary_crossentropy", metrics=[])
    x_train = {f"f{i}": train_idx[:, i] for i in range(len(CARDINALITIES))}
    x_test = {f"f{i}": test_idx[:, i] for i in range(len(CARDINALITIES))}
    t0 = time.perf_counter()
    model.fit(x_train, train_y, batch_size=4096, epochs=epochs, verbose=0, shuffle=True)
    seconds = time.perf_counter() - t0
    probs = model.predict(x_test, batch_size=65536).ravel()
    return {
        "seconds": seconds,
        "samples_per_s": len(train_y) * epochs / seconds,
        "test_auc": auc(test_y, probs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--models", default="deepfm,dcn")
    args = ap.parse_args(argv)

    from reloop.features.encoding import FeatureEncoder
    from reloop.synthetic import make_ctr_table

    torch.set_num_threads(os.cpu_count() or 1)
    df = make_ctr_table(args.rows, CARDINALITIES, seed=args.seed)
    n_train = int(args.rows * 0.9)
    train_df, test_df = df.head(n_train), df.tail(args.rows - n_train)
    encoder = FeatureEncoder.from_config(_reloop_params("deepfm", 1, 0).features)
    train_idx = encoder.encode(train_df).indices.numpy()
    test_idx = encoder.encode(test_df).indices.numpy()
    train_y = train_df["y"].to_numpy().astype(np.float32)
    test_y = test_df["y"].to_numpy().astype(np.float32)

    results = {}
    for backbone in args.models.split(","):
        r = run_reloop(backbone, train_df, test_df, args.epochs, args.seed)
        d = run_deepctr(backbone, train_idx, train_y, test_idx, test_y, args.epochs, args.seed)
        results[backbone] = {
            "reloop": r,
            "deepctr_torch": d,
            "ratio": r["samples_per_s"] / d["samples_per_s"],
            "auc_gap": abs(r["test_auc"] - d["test_auc"]),
        }
        print(
            f"{backbone:7s} reloop {r['samples_per_s']:9.0f} samples/s (AUC {r['test_auc']:.4f})"
            f" | deepctr-torch {d['samples_per_s']:9.0f} samples/s (AUC {d['test_auc']:.4f})"
            f" | ratio {results[backbone]['ratio']:.2f}x, AUC gap "
            f"{results[backbone]['auc_gap']:.4f}",
            flush=True,
        )

    payload = {
        "command": "python -m benchmarks.train_throughput " + " ".join(argv or []),
        "rows": args.rows, "train_rows": n_train, "epochs": args.epochs, "seed": args.seed,
        "batch_size": 4096, "embedding_dim": 10, "mlp_hidden": [400, 400, 400],
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
