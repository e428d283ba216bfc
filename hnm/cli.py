"""The ``hnm`` command: mining from the shell over ``.npy`` files.

Inputs are opened as memory maps (never loaded whole); outputs are ``.npy``,
``.npz`` or ``.csv`` by their extension. User errors print one line on stderr
and exit with status 2.
"""
import argparse
import os
import sys
import time

import numpy as np

EXAMPLES = {
    "demo": "hnm demo --out figures/",
    "topk": "hnm topk losses.npy -k 1000 -o hardest.csv\n"
            "  hnm topk scores.npy --band 100 500 --axis -1 -o band.npz",
    "score": "hnm score y_true.npy proba.npy --measure log_loss -o difficulty.npy",
    "mine": "hnm mine queries.npy positives.npy corpus.npy --num-negatives 5 "
            "--relative-margin 0.05 -o triplets.csv",
}


class UserError(Exception):
    """An error in what the user asked for: reported in one line, no traceback."""


def _load(path, name):
    if not os.path.exists(path):
        raise UserError(f"{name}: no such file: {path}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UserError(f"{name}: cannot read {path} as a .npy file ({exc})") from None


def _check_output(path):
    if os.path.splitext(path)[1].lower() not in (".npy", ".npz", ".csv"):
        raise UserError(f"{path}: the output must end in .npy, .npz or .csv")


def _save(path, columns):
    """Write named 1-D or 2-D columns to .npy (first column), .npz or .csv."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        np.savez(path, **columns)
    elif ext == ".npy":
        if len(columns) != 1:
            raise UserError(f"{path}: .npy holds one array; use .npz or .csv for "
                            f"{', '.join(columns)}")
        np.save(path, next(iter(columns.values())))
    elif ext == ".csv":
        names, blocks, fmts = [], [], []
        for name, a in columns.items():
            a = np.asarray(a)
            a = a[:, None] if a.ndim == 1 else a
            names += [name] if a.shape[1] == 1 else [f"{name}_{j}" for j in range(a.shape[1])]
            fmts += ["%.9g" if a.dtype.kind == "f" else "%d"] * a.shape[1]
            blocks.append(a.astype(np.float64))  # ids are exact in float64
        np.savetxt(path, np.concatenate(blocks, axis=1), fmt=fmts, delimiter=",",
                   header=",".join(names), comments="")
    else:
        raise UserError(f"{path}: the output must end in .npy, .npz or .csv")
    print(f"wrote {path}", file=sys.stderr)


def _topk(args):
    from .selection import topk

    scores = _load(args.file, "scores")
    band = None if args.band is None else tuple(args.band)
    result = topk(scores, None if band else args.k, band=band, axis=args.axis,
                  largest=not args.smallest, nan_policy=args.nan_policy,
                  progress=args.progress)
    if args.output:
        _save(args.output, {"index": result.indices, "value": result.values})
    else:
        for i, v in zip(result.indices.reshape(-1), result.values.reshape(-1)):
            print(f"{i}\t{v}")
    return 0


def _score(args):
    from .scoring import difficulty

    y_true = _load(args.y_true, "y_true")
    y_score = _load(args.y_score, "y_score")
    labels = None if args.labels is None else np.asarray(args.labels, dtype=y_true.dtype)
    d = difficulty(y_true, y_score, measure=args.measure, labels=labels)
    if args.output:
        _save(args.output, {"difficulty": d})
    else:
        np.savetxt(sys.stdout, d, fmt="%.9g")
    return 0


def _mine(args):
    from .retrieval import mine_hard_negatives

    queries = _load(args.queries, "queries")
    positives = np.asarray(_load(args.positives, "positives"))
    candidates = _load(args.candidates, "candidates")
    band = (args.band[0], args.band[1]) if args.band else (0, None)
    mined = mine_hard_negatives(
        queries, positives, candidates, num_negatives=args.num_negatives, band=band,
        absolute_margin=args.absolute_margin, relative_margin=args.relative_margin,
        max_score=args.max_score, min_score=args.min_score, sampling=args.sampling,
        easy_ratio=args.easy_ratio, metric=args.metric, random_state=args.seed,
        progress=args.progress)
    _save(args.output, {"query": mined.query, "positive": mined.positive,
                        "negative": mined.negative, "score": mined.score,
                        "positive_score": mined.positive_score,
                        "is_hard": mined.is_hard.astype(np.int8), "rank": mined.rank})
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in mined.summary.items()), file=sys.stderr)
    return 0


def _demo(args):
    from .demo import run_demo

    run_demo(out_dir=args.out, quick=args.quick)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="hnm", description="Hard negative and hard example mining.",
        epilog="Run 'hnm COMMAND --help' for each command's options and an example.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text,
                              epilog=f"example:\n  {EXAMPLES[name]}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    demo = command("demo", "random vs hard negatives on a dataset that ships with "
                           "scikit-learn: a comparison table and a figure")
    demo.add_argument("--out", default=".", help="directory for the figure (default: .)")
    demo.add_argument("--quick", action="store_true", help="fewer rounds (for tests)")
    demo.set_defaults(func=_demo)

    tk = command("topk", "select the top k scores (or a rank band) of a .npy file")
    tk.add_argument("file", help=".npy file of scores (memory-mapped)")
    tk.add_argument("-k", type=int, default=10, help="how many (default 10)")
    tk.add_argument("--band", type=int, nargs=2, metavar=("START", "STOP"),
                    help="ranks START..STOP-1 instead of the top k")
    tk.add_argument("--axis", type=int, choices=[-1, 0, 1], default=None,
                    help="select along this axis of a 2-D file (default: flattened)")
    tk.add_argument("--smallest", action="store_true", help="select the smallest scores")
    tk.add_argument("--nan-policy", default="raise", choices=["raise", "omit"])
    tk.add_argument("-o", "--output", help="write index,value to .csv/.npz (default: stdout)")
    tk.add_argument("--progress", action="store_true", help="show a progress bar")
    tk.set_defaults(func=_topk)

    sc = command("score", "difficulty of every example from labels and model scores")
    sc.add_argument("y_true", help=".npy file of labels, shape (n,)")
    sc.add_argument("y_score", help=".npy file of scores, shape (n,) or (n, n_classes)")
    sc.add_argument("--measure", default="margin",
                    choices=["margin", "log_loss", "hinge", "confidence", "entropy"])
    sc.add_argument("--labels", nargs="+", help="class label of each score column")
    sc.add_argument("-o", "--output", help=".npy or .csv (default: stdout)")
    sc.set_defaults(func=_score)

    mi = command("mine", "mine (query, positive, negative) triplets from embeddings")
    mi.add_argument("queries", help=".npy file, shape (n_queries, dim)")
    mi.add_argument("positives", help=".npy file of positive ids (n_queries,) or "
                                      "embeddings (n_queries, dim)")
    mi.add_argument("candidates", help=".npy file, shape (n_candidates, dim) (memory-mapped)")
    mi.add_argument("-o", "--output", required=True, help=".csv or .npz")
    mi.add_argument("--num-negatives", type=int, default=3)
    mi.add_argument("--band", type=int, nargs=2, metavar=("START", "STOP"))
    mi.add_argument("--absolute-margin", type=float)
    mi.add_argument("--relative-margin", type=float)
    mi.add_argument("--max-score", type=float)
    mi.add_argument("--min-score", type=float)
    mi.add_argument("--sampling", default="top", choices=["top", "random"])
    mi.add_argument("--easy-ratio", type=float, default=0.0)
    mi.add_argument("--metric", default="cosine", choices=["cosine", "ip", "l2"])
    mi.add_argument("--seed", type=int, default=None)
    mi.add_argument("--progress", action="store_true")
    mi.set_defaults(func=_mine)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        if getattr(args, "output", None):
            _check_output(args.output)  # before any work
        status = args.func(args)
    except (UserError, ValueError, TypeError, OSError) as exc:
        print(f"hnm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if args.command != "demo":
        print(f"done in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
