"""Write the small MNIST subset the tests use: the first rows of each split of a full
copy in the Hugging Face hub's parquet layout, with the same columns and the same
``huggingface`` schema metadata (so ``datasets`` still sees ``Image`` and ``ClassLabel``).

    python tests/data/make_mnist_subset.py [--source ../shared/mnist] [--out tests/data/mnist]

Paths are relative to the repository root. Defaults: 1000 train rows, 500 test rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]


def make_subset(source: Path, out: Path, rows: dict[str, int]) -> None:
    for split, n in rows.items():
        name = f"mnist/{split}-00000-of-00001.parquet"
        table = pq.read_table(source / name)  # keeps the schema metadata
        subset = table.slice(0, n)
        dest = out / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        # One row group, like the originals; PNG bytes don't compress, labels do.
        pq.write_table(subset, dest, compression="snappy", row_group_size=n)
        written = pq.read_schema(dest)
        assert written.metadata == table.schema.metadata, "schema metadata was lost"
        print(f"{dest.relative_to(ROOT)}: {subset.num_rows} rows, {dest.stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT / ".." / "shared" / "mnist")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "mnist")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=500)
    args = parser.parse_args()
    make_subset(args.source.resolve(), args.out.resolve(), {"train": args.train, "test": args.test})


if __name__ == "__main__":
    main()
