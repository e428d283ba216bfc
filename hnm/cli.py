"""The ``hnm`` command: mining from the shell over ``.npy`` files.

Inputs are opened as memory maps (never loaded whole); outputs are ``.npy``,
``.npz`` or ``.csv`` by their extension, written atomically (complete under
their final name or not at all, see :mod:`hnm._io`), so an output may also be
an input. User errors print one line on stderr and exit with status 2; Ctrl-C
exits with status 130 and leaves every previous output intact.
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np

from . import _io

EXAMPLES = {
    "demo": "hnm demo --out figures/",
    "topk": "hnm topk losses.npy -k 1000 -o hardest.csv\n"
            "  hnm topk scores.npy --band 100 500 --axis -1 -o band.npz",
    "score": "hnm score y_true.npy proba.npy --measure log_loss -o difficulty.npy",
    "mine": "hnm mine queries.npy positives.npy corpus.npy -k 5 "
            "--relative-margin 0.05 -o triplets.csv",
}


class UserError(Exception):
    """An error in what the user asked for: reported in one line, no traceback.

    See Also
    --------
    main : prints it on stderr as one line and returns status 2.

    Examples
    --------
    >>> from hnm.cli import main
    >>> main(["topk", "missing.npy", "-k", "3"])  # the message goes to stderr
    2
    """


_COMMAND = ["hnm"]  # the running command, for one-line messages


def _warn(message):
    print(f"{_COMMAND[0]}: warning: {message}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    _warn(str(message))  # a Python warning as one line, without the source line


def _load(path, name):
    if not os.path.exists(path):
        raise UserError(f"{name}: no such file: {path}")
    if os.path.isdir(path):
        raise UserError(f"{name}: {path} is a directory, not a .npy file")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise UserError(f"{name}: cannot read {path} ({exc.strerror or exc})") from None
    if magic[:4] == b"PK\x03\x04":
        raise UserError(f"{name}: {path} is a .npz archive; pass one of its arrays as a "
                        ".npy file (np.save('x.npy', np.load(path)['name']))")
    if magic != b"\x93NUMPY":
        raise UserError(f"{name}: {path} is not a .npy file (it does not start with the "
                        ".npy header); write arrays with numpy.save, e.g. "
                        "np.save('x.npy', np.loadtxt('x.txt'))")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        reason = str(exc)
        if "pickle" in reason or "object" in reason:
            reason = "it holds Python objects; save a numeric array instead"
        raise UserError(f"{name}: cannot read {path} as a .npy file ({reason})") from None


def _check_output(path):
    if os.path.splitext(path)[1].lower() not in (".npy", ".npz", ".csv"):
        raise UserError(f"{path}: the output must end in .npy, .npz or .csv")


def _save(path, columns, progress=False):
    """Write named 1-D or 2-D columns to .npy (one column), .npz or .csv, atomically."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        _io.save_npz(path, columns, progress=progress)
    elif ext == ".npy":
        if len(columns) != 1:
            raise UserError(f"{path}: .npy holds one array; use .npz or .csv for "
                            f"{', '.join(columns)}")
        _io.save_npy(path, next(iter(columns.values())), progress=progress)
    elif ext == ".csv":
        _io.save_csv(path, columns, progress=progress)
    else:
        raise UserError(f"{path}: the output must end in .npy, .npz or .csv")
    print(f"wrote {path}", file=sys.stderr)


def _print_columns(columns):
    """Columns to stdout, tab-separated, formatted as in a .csv output."""
    for _, text in _io.iter_delimited(columns, delimiter="\t"):
        sys.stdout.write(text)


def _topk(args):
    from .selection import topk

    if args.k is not None and args.band is not None:
        raise UserError("give -k or --band, not both (-k K is --band 0 K)")
    scores = _load(args.file, "scores")
    band = None if args.band is None else tuple(args.band)
    k = None if band else (10 if args.k is None else args.k)
    result = topk(scores, k, band=band, axis=args.axis,
                  largest=not args.smallest, nan_policy=args.nan_policy,
                  progress=args.progress)
    if args.output:
        _save(args.output, {"index": result.indices, "value": result.values},
              progress=args.progress)
    else:
        _print_columns({"index": result.indices.reshape(-1),
                        "value": result.values.reshape(-1)})
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
        _print_columns({"difficulty": d})
    return 0


def _mine(args):
    from .retrieval import mine_hard_negatives

    queries = _load(args.queries, "queries")
    positives = np.asarray(_load(args.positives, "positives"))
    candidates = _load(args.candidates, "candidates")
    band = (args.band[0], args.band[1]) if args.band else (0, None)
    _warn_short(args, positives, candidates, band)
    resumed = _finished_blocks(args.checkpoint)
    try:
        mined = mine_hard_negatives(
            queries, positives, candidates, k=args.k, at_most=args.at_most, band=band,
            absolute_margin=args.absolute_margin, relative_margin=args.relative_margin,
            duplicate_threshold=args.duplicate_threshold, lower_margin=args.lower_margin,
            max_score=args.max_score, min_score=args.min_score, sampling=args.sampling,
            easy_ratio=args.easy_ratio, metric=args.metric, random_state=args.seed,
            progress=args.progress, checkpoint=args.checkpoint)
    except ValueError as exc:
        if "made by another call" not in str(exc):
            raise
        raise UserError(_option_names(str(exc))) from None
    if resumed:
        print(f"checkpoint {args.checkpoint}: {resumed} finished block(s) resumed",
              file=sys.stderr)
    _save(args.output, {"query": mined.query, "positive": mined.positive,
                        "negative": mined.negative, "score": mined.score,
                        "positive_score": mined.positive_score,
                        "is_hard": mined.is_hard.astype(np.int8), "rank": mined.rank},
          progress=args.progress)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in mined.summary.items()), file=sys.stderr)
    return 0


def _warn_short(args, positives, candidates, band):
    """Say up front when the corpus cannot give every query -k negatives."""
    n_c = candidates.shape[0] if candidates.ndim == 2 else 0
    start, stop = band
    end = n_c if stop is None else stop
    k = min(args.k, end - start) if args.at_most else args.k
    if n_c == 0 or start >= end or k < 1 or k > end - start:
        return  # nothing to say, or the API refuses it with its own message
    # at least one positive per query is excluded when positives are ids
    excluded = 1 if positives.dtype.kind in "iu" else 0
    at_most = max(0, min(end, n_c - excluded) - start)
    if at_most >= k:
        return
    _warn(f"-k {args.k} from rank {start} needs ranks up to {start + k}, but the corpus "
          f"has {n_c} candidates: every query gets at most {at_most} negatives (counted "
          "in n_short_queries)")


def _finished_blocks(directory):
    if not directory or not os.path.exists(os.path.join(directory, "manifest.json")):
        return 0
    return sum(1 for f in os.listdir(directory)
               if f.startswith("block-") and not _io.is_temporary(f))


def _option_names(message):
    """A checkpoint mismatch in the command's words: --at-most, not at_most."""
    import re

    def option(match):
        name = match.group(1)
        return ("--seed " if name == "random_state" else "-k " if name == "k" else
                "--" + name.replace("_", "-") + " ")

    return re.sub(r"\b([a-z][a-z_]*)=", option, message)


def _demo(args):
    from .demo import run_demo

    run_demo(out_dir=args.out, quick=args.quick)
    return 0


def _or_none(kind, what):
    """An argparse type: ``kind(text)``, or None for 'none'."""
    def parse(text):
        if text.strip().lower() == "none":
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} or 'none', got {text!r}") \
                from None
    return parse


_float_or_none = _or_none(float, "a number")
_int_or_none = _or_none(int, "an integer")


def _mine_default(name):
    import inspect

    from .retrieval import mine_hard_negatives

    return inspect.signature(mine_hard_negatives).parameters[name].default


def build_parser():
    """The ``hnm`` command's argument parser (one subcommand per job).

    See Also
    --------
    main : parses and runs a command.

    Examples
    --------
    >>> from hnm.cli import build_parser
    >>> args = build_parser().parse_args(["topk", "losses.npy", "-k", "10"])
    >>> args.command, args.k
    ('topk', 10)
    """
    from . import __version__
    from .scoring import MEASURES

    parser = argparse.ArgumentParser(
        prog="hnm", description="Hard negative and hard example mining.",
        epilog="Run 'hnm COMMAND --help' for each command's options and an example.")
    parser.add_argument("--version", action="version", version=f"hnm {__version__}")
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
    tk.add_argument("-k", type=int, default=None,
                    help="how many (default: 10; not with --band)")
    tk.add_argument("--band", type=int, nargs=2, metavar=("START", "STOP"),
                    help="ranks START..STOP-1 instead of the top k (not with -k)")
    tk.add_argument("--axis", type=int, choices=[-1, 0, 1], default=None,
                    help="select along this axis of a 2-D file (default: flattened)")
    tk.add_argument("--smallest", action="store_true", help="select the smallest scores")
    tk.add_argument("--nan-policy", default="raise", choices=["raise", "omit"],
                    help="NaN scores: raise an error, or omit them (default: raise)")
    tk.add_argument("-o", "--output", help="write index,value to .csv/.npz (default: "
                                           "stdout, tab-separated)")
    tk.add_argument("--progress", action="store_true",
                    help="show progress bars (reading the scores, writing the output)")
    tk.set_defaults(func=_topk)

    sc = command("score", "difficulty of every example from labels and model scores")
    sc.add_argument("y_true", help=".npy file of labels, shape (n,)")
    sc.add_argument("y_score", help=".npy file of scores, shape (n,) or (n, n_classes)")
    sc.add_argument("--measure", default="margin",
                    choices=MEASURES,
                    help="difficulty measure (default: margin)")
    sc.add_argument("--labels", nargs="+",
                    help="class label of each score column (default: 0 .. n_classes-1)")
    sc.add_argument("-o", "--output", help=".npy or .csv (default: stdout)")
    sc.set_defaults(func=_score)

    mi = command("mine", "mine (query, positive, negative) triplets from embeddings")
    mi.add_argument("queries", help=".npy file, shape (n_queries, dim)")
    mi.add_argument("positives", help=".npy file of positive ids (n_queries,) or "
                                      "embeddings (n_queries, dim)")
    mi.add_argument("candidates", help=".npy file, shape (n_candidates, dim) (memory-mapped)")
    mi.add_argument("-o", "--output", required=True,
                    help=".csv or .npz: columns query, positive, negative, score, "
                         "positive_score, is_hard, rank")
    mi.add_argument("-k", type=int, default=3, metavar="K",
                    help="hard negatives per query (default: 3)")
    mi.add_argument("--at-most", action="store_true",
                    help="with K larger than the band: take the whole band instead of "
                         "stopping with an error (default: off)")
    mi.add_argument("--band", type=_int_or_none, nargs=2, metavar=("START", "STOP"),
                    help="take them from ranks START..STOP-1 of the candidates that pass "
                         "the guards; STOP 'none' runs to the end (default: 0 none, the "
                         "K closest)")
    mi.add_argument("--absolute-margin", type=float, metavar="M",
                    help="drop candidates scoring above the positive's score - M "
                         "(default: off)")
    mi.add_argument("--relative-margin", type=float, metavar="R",
                    help="drop candidates scoring above the positive's score - R |score|, "
                         "R in [0, 1]; 0.05 drops those above 95%% of it (NV-Retriever's "
                         "TopK-PercPos) (default: off)")
    mi.add_argument("--duplicate-threshold", type=_float_or_none, metavar="T",
                    default=_mine_default("duplicate_threshold"),
                    help="drop candidates whose cosine similarity to one of the query's "
                         "positives is above T, 'none' for no such guard (default: "
                         f"{_mine_default('duplicate_threshold')})")
    mi.add_argument("--lower-margin", type=float, metavar="M",
                    help="drop candidates scoring below the positive's score - M "
                         "(default: off)")
    mi.add_argument("--max-score", type=float, metavar="S",
                    help="drop candidates scoring above S (default: off)")
    mi.add_argument("--min-score", type=float, metavar="S",
                    help="drop candidates scoring below S (default: off)")
    mi.add_argument("--sampling", default="top", choices=["top", "random", "simans"],
                    help="the K closest of the band, K drawn uniformly from it, or K "
                         "drawn with SimANS's weights peaking below the positive's score "
                         "(default: top)")
    mi.add_argument("--easy-ratio", type=float, default=0.0, metavar="E",
                    help="add round(E x hard) random negatives per query (default: 0)")
    mi.add_argument("--metric", default="cosine", choices=["cosine", "ip", "l2"],
                    help="similarity (default: cosine)")
    mi.add_argument("--seed", type=int, default=None,
                    help="seed of the random draws (default: fresh each run; with "
                         "--checkpoint drawn once and kept in DIR)")
    mi.add_argument("--checkpoint", metavar="DIR",
                    help="save each finished block of queries in DIR; the same command "
                         "run again (after Ctrl-C, a kill, a crash) computes only the "
                         "missing blocks, with the same output (default: off)")
    mi.add_argument("--progress", action="store_true",
                    help="show progress bars (the search, writing the output)")
    mi.set_defaults(func=_mine)
    return parser


def main(argv=None):
    """Run the ``hnm`` command line (``argv`` defaults to ``sys.argv[1:]``).

    Returns the exit status: 0, or 2 with a one-line message on stderr for an
    error in what was asked, 130 after Ctrl-C. Without ``-o`` results are
    printed (tab-separated); timings go to stderr.

    See Also
    --------
    build_parser : the commands and their options.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from hnm.cli import main
    >>> path = os.path.join(tempfile.mkdtemp(), "losses.npy")
    >>> np.save(path, np.array([0.1, 0.9, 0.5]))
    >>> main(["topk", path, "-k", "2"])
    1	0.9
    2	0.5
    0
    """
    args = build_parser().parse_args(argv)
    _COMMAND[0] = f"hnm {args.command}"
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            if getattr(args, "output", None):
                _check_output(args.output)  # before any work
            status = args.func(args)
    except (UserError, ValueError, TypeError, OSError) as exc:
        print(f"hnm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = ""
        if getattr(args, "checkpoint", None):
            where = (f"; finished blocks are kept in {args.checkpoint}: run the same "
                     "command again to resume")
        print(f"hnm {args.command}: interrupted, no output written{where}",
              file=sys.stderr)
        return 130
    if args.command != "demo":
        print(f"done in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
