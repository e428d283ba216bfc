"""The ``hnm`` command.

``hnm demo`` scores a dataset that ships with scikit-learn out of fold and lists
its hardest examples; ``hnm topk`` selects from a ``.npy`` file of scores
(memory-mapped, so the file may be larger than RAM).
"""
import argparse
import sys
import time

import numpy as np

from .selection import topk


def _demo(args):
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    loader = {"breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits,
              "wine": datasets.load_wine, "iris": datasets.load_iris}[args.dataset]
    data = loader()
    X, y = data.data, data.target
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    t0 = time.perf_counter()
    # out of fold: no example is scored by a model that saw it
    proba = cross_val_predict(model, X, y, cv=5, method="predict_proba")
    p_true = proba[np.arange(len(y)), y]
    loss = -np.log(np.clip(p_true, np.finfo(float).eps, 1.0))
    hardest = topk(loss, min(args.top, len(y)))
    elapsed = time.perf_counter() - t0
    names = getattr(data, "target_names", None)
    label = (lambda c: str(names[c])) if names is not None else str
    print(f"dataset {args.dataset}: {X.shape[0]} examples, {X.shape[1]} features; "
          f"5-fold out-of-fold logistic regression ({elapsed:.2f} s)")
    print(f"misclassified: {(proba.argmax(1) != y).sum()}, "
          f"mean log-loss {loss.mean():.4f}; the {len(hardest.indices)} hardest:")
    print(f"{'rank':>4} {'index':>6} {'label':>14} {'predicted':>14} {'p(label)':>9} {'log-loss':>9}")
    for rank, (i, value) in enumerate(zip(hardest.indices, hardest.values)):
        print(f"{rank:>4} {i:>6} {label(y[i]):>14} {label(proba[i].argmax()):>14} "
              f"{p_true[i]:>9.4f} {value:>9.4f}")
    return 0


def _topk(args):
    scores = np.load(args.file, mmap_mode="r")
    band = None if args.band is None else tuple(args.band)
    result = topk(scores, None if band else args.k, band=band,
                  largest=not args.smallest, nan_policy=args.nan_policy)
    if args.output:
        np.savez(args.output, values=result.values, indices=result.indices)
    else:
        for i, v in zip(result.indices, result.values):
            print(f"{i}\t{v}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="hnm", description="Hard example mining.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="list the hardest examples of a bundled dataset")
    demo.add_argument("--dataset", default="breast_cancer",
                      choices=["breast_cancer", "digits", "wine", "iris"])
    demo.add_argument("--top", type=int, default=10, help="how many to list (default 10)")
    demo.set_defaults(func=_demo)
    tk = sub.add_parser("topk", help="select the top k scores of a .npy file (memory-mapped)")
    tk.add_argument("file", help="a 1-D .npy file of scores")
    tk.add_argument("-k", type=int, default=10)
    tk.add_argument("--band", type=int, nargs=2, metavar=("START", "STOP"))
    tk.add_argument("--smallest", action="store_true", help="select the smallest scores")
    tk.add_argument("--nan-policy", default="raise", choices=["raise", "omit"])
    tk.add_argument("-o", "--output", help="write values and indices to this .npz file")
    tk.set_defaults(func=_topk)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "top", 1) < 1:
        print("hnm: error: --top must be >= 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"hnm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
