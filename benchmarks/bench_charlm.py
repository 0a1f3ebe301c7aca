"""Model-level benchmark: the CLI's default character model, one training step's gradients.

The step is ``CharLM.loss`` (one-hot or embedding input -> LSTM -> linear head -> softmax
cross-entropy, forward and the full backward, dropout 0.2 on the LSTM output as the CLI), and the
same model in PyTorch (one-hot via ``F.one_hot`` or ``nn.Embedding``, ``nn.LSTM``, ``nn.Linear``,
``F.cross_entropy``, ``backward()``); the optimizer update is not timed. Columns: ``lib`` (the
library as installed: compiled path when numba is importable), ``numpy`` (compiled path off),
``torch``. Interleaved blocks in one process, medians.

    python benchmarks/bench_charlm.py          # default: V = 103, H = 256, T = 64, B = 32
    python benchmarks/bench_charlm.py --embedding-dim 64 --clock cpu
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lstm import blas_threads, time_interleaved  # noqa: E402

from lstm_bptt import CharLM, _fast  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def build(V, H, T, B, E, dtype, dropout):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, (T + 1, B))
    inputs, targets = ids[:-1], ids[1:]
    model = CharLM(V, H, embedding_dim=E, dropout=dropout, dtype=dtype, rng=rng)

    def lib():
        return model.loss(inputs, targets, train=True)

    def numpy_path():
        previous = _fast.set_fast_path(False)
        try:
            return lib()
        finally:
            _fast.set_fast_path(previous)

    fns = {"lib": lib}
    if _fast.fast_path_enabled():
        fns["numpy"] = numpy_path
    if torch is not None:
        tdtype = torch.float32 if dtype == np.float32 else torch.float64
        lstm = torch.nn.LSTM(E or V, H, dtype=tdtype)
        head = torch.nn.Linear(H, V, dtype=tdtype)
        emb = None if E is None else torch.nn.Embedding(V, E, dtype=tdtype)
        drop = torch.nn.Dropout(dropout)
        tin, tt = torch.from_numpy(inputs), torch.from_numpy(targets)
        params = [*lstm.parameters(), *head.parameters()]
        params += [] if emb is None else list(emb.parameters())

        def torch_step():
            for p in params:
                p.grad = None
            x = (torch.nn.functional.one_hot(tin, V).to(tdtype) if emb is None
                 else emb(tin))
            out, _ = lstm(x)
            logits = head(drop(out))
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tt.reshape(-1))
            loss.backward()
            return loss

        fns["torch"] = torch_step
    return fns


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, default=103)
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--seq-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--embedding-dim", type=int, nargs="+", default=[0],
                    help="0 = one-hot input (the CLI default); several values run in turn")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--min-block", type=float, default=0.3)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"compiled path: {_fast.fast_path_enabled()}; torch: "
          f"{None if torch is None else torch.__version__}; clock {args.clock}")
    print(f"{'input':9} {'dtype':7} {'lib ms':>8} {'numpy ms':>9} {'torch ms':>9} "
          f"{'lib/torch':>9} {'numpy/torch':>11} {'lib/numpy':>9}")
    with blas_threads(args.threads):
        for E in args.embedding_dim:
            for dtype in args.dtypes:
                fns = build(args.vocab, args.hidden_size, args.seq_length, args.batch_size,
                            E or None, np.dtype(dtype), args.dropout)
                med = time_interleaved(fns, args.repeats, args.min_block, clock)

                def ms(k, med=med):
                    return f"{1e3 * med[k]:.2f}" if k in med else "-"

                def ratio(a, b, med=med):
                    return f"{med[a] / med[b]:.3f}" if a in med and b in med else "-"

                name = "one-hot" if not E else f"emb {E}"
                print(f"{name:9} {dtype:7} {ms('lib'):>8} {ms('numpy'):>9} {ms('torch'):>9} "
                      f"{ratio('lib', 'torch'):>9} {ratio('numpy', 'torch'):>11} "
                      f"{ratio('lib', 'numpy'):>9}", flush=True)


if __name__ == "__main__":
    main()
