"""Names for the character-level language models of notebook 06.

```python
from namesdata import load_names

load_names()                  # the 1990 US census first names, lower case, each once: 5,163
load_names(lists="last")      # its surnames: 88,799
load_names("my_names.txt")    # any text file, one name (or word) per line
```

The census lists are the public-domain files of the US Census Bureau's 1990 name survey as the
PyPI package `names` (0.3.0) ships them: `dist.female.first` (4,275 names), `dist.male.first`
(1,219) and `dist.all.last` (88,799), one name per line in capitals, most frequent first,
followed by its frequency columns. Install it with the notebooks extra,
`pip install -e ".[notebooks]"` (the dev extra includes it); nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

# which census files make up each list
CENSUS_LISTS: dict[str, tuple[str, ...]] = {
    "first": ("dist.female.first", "dist.male.first"),
    "female": ("dist.female.first",),
    "male": ("dist.male.first",),
    "last": ("dist.all.last",),
}


def census_file(filename: str) -> Path:
    """The path of one of the `names` package's census files, e.g. "dist.male.first"."""
    try:
        folder = importlib.resources.files("names")
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "load_names: the census name lists come with the PyPI package 'names'; install "
            'it with `pip install -e ".[notebooks]"` (or `pip install names`), or pass the '
            "path of a text file with one name per line"
        ) from error
    path = Path(str(folder / filename))
    if not path.is_file():
        raise FileNotFoundError(f"load_names: the 'names' package has no file {filename!r}")
    return path


def load_names(
    path: str | Path | None = None, *, lists: str = "first", unique: bool = True
) -> list[str]:
    """Names as lower-case strings, in file order.

    - `path=None`: the census lists of the `names` package; `lists` picks "first" (female
      then male first names), "female", "male" or "last" (surnames). Each census line is
      `NAME frequency cumulative-frequency rank`; only the name is kept.
    - `path`: a UTF-8 text file with one name per line; surrounding whitespace and blank
      lines are dropped (a line is kept whole, spaces inside it included).
    - `unique`: keep each name once, at its first occurrence (some first names are on both
      census lists: 5,494 lines hold 5,163 names).
    """
    if path is None:
        if lists not in CENSUS_LISTS:
            raise ValueError(
                f"load_names: lists must be one of {', '.join(CENSUS_LISTS)}, got {lists!r}"
            )
        lines = [
            line.split(maxsplit=1)[0]
            for filename in CENSUS_LISTS[lists]
            for line in census_file(filename).read_text(encoding="ascii").splitlines()
            if line.strip()
        ]
    else:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    names = [line.lower() for line in lines if line]
    return list(dict.fromkeys(names)) if unique else names
