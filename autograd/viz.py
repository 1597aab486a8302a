"""Drawing the graph behind a tensor with Graphviz: `draw_graph` and `save_graph`.

One node per tensor (its name, shape, dtype and, after backward, its gradient) and one per op
(the op and its arguments), edges in data-flow direction. Ops that ran inside an `nn.Module`
call are boxed into a labelled cluster per module (the `_scope` recorded by each op), and
`collapse=True` folds each module into a single node.

After `backward()`, a tensor's fill colour shows log10 of its gradient norm (a legend gives the
scale); NaN/Inf gradients are red, all-zero gradients (a dead ReLU) grey, and parameters that
got no gradient are dashed. Only leaves keep `.grad` after backward: build the forward pass
inside `with autograd.retain_grads():` (or call `retain_grad()`) to see gradients on every node.

Building the `graphviz.Digraph` needs only the `graphviz` Python package; rendering it (SVG,
PNG, PDF, inline display in Jupyter) needs the Graphviz `dot` program.
"""

from __future__ import annotations

import html
import math
import shutil
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import graphviz
import numpy as np

from .tensor import Tensor, data_released, topological_order

ScopePath = tuple[Hashable, ...]  # a scope path: scope entries, outermost first

# ----- the look: one place for every colour ------------------------------------------------
# Gradient-norm scale, pale (small gradients) to dark (large): ColorBrewer YlGnBu.
GRAD_PALETTE = ("#edf8b1", "#c7e9b4", "#7fcdbb", "#41b6c4", "#1d91c0", "#225ea8")
NONFINITE_COLOR = "#e31a1c"  # NaN or Inf somewhere in the gradient
ZERO_GRAD_COLOR = "#bdbdbd"  # gradient is exactly zero everywhere (e.g. a dead ReLU)
PARAM_COLOR = "#fdd0a2"  # fill of parameters before backward
PARAM_BORDER = "#e6550d"  # border of parameters, always
DATA_COLOR = "#dadaeb"  # leaves that don't require grad (input batches, targets)
TENSOR_COLOR = "#ffffff"  # other tensors
OP_COLOR = "#f0f0f0"
ROOT_BORDER = "#67000d"
MODULE_COLOR = "#e5f5e0"  # a collapsed module
CLUSTER_COLORS = ("#f7f7f7", "#ebebeb")  # alternate with the nesting depth
SUFFIX_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}
# ops whose inputs broadcast against each other: their edges are labelled when a shape changes
BROADCASTING_OPS = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "where"}


def draw_graph(
    root: Tensor | Sequence[Tensor],
    *,
    params: Any = None,
    show_data: bool = False,
    show_grad: bool | str = True,
    rankdir: str = "TB",
    max_nodes: int | None = None,
    collapse: bool | int = False,
) -> graphviz.Digraph:
    """The graph that computed `root` (a Tensor or several) as a `graphviz.Digraph`.

    - `params`: an `nn.Module` (anything with `named_parameters()`) or a `{name: Tensor}`
      mapping; parameters are labelled with their dotted names (a Tensor's own `name` wins).
    - `show_data`: add a summary of each tensor's values (the values, for tiny tensors).
    - `show_grad`: `True` shows the gradient norm of tensors that have `.grad` and colours
      them by it; `"stats"` adds min/mean/max; `False` leaves gradients out.
    - `rankdir`: `"TB"` (top to bottom) or `"LR"` (left to right).
    - `max_nodes`: draw at most this many tensors, those nearest the root (each with the op
      that made it); the rest become one `... N more` node.
    - `collapse`: `True` draws each innermost module as one node with its input and output
      shapes (containers stay boxes around them); an int `k` collapses whole modules `k`
      levels below the root module (1: the root's children, 0: the whole model).

    Gradients are drawn where `.grad` is set: on leaves after `backward()`, and on every
    node when the forward pass ran inside `with autograd.retain_grads():`. The same graph
    with the same values gives the same DOT text (node ids follow the topological order).
    Works before and after `backward()`, also after backward released the saved arrays.
    """
    roots = [root] if isinstance(root, Tensor) else list(root)
    if not roots or not all(isinstance(r, Tensor) for r in roots):
        raise TypeError("draw_graph: root must be a Tensor or a non-empty sequence of Tensors")
    if show_grad not in (True, False, "stats"):
        raise ValueError(f"draw_graph: show_grad must be True, False or 'stats', got {show_grad!r}")
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"draw_graph: rankdir must be 'TB', 'LR', 'BT' or 'RL', got {rankdir!r}")
    if not isinstance(collapse, int) or collapse < 0:  # bool is an int
        raise ValueError(f"draw_graph: collapse must be a bool or an int >= 0, got {collapse!r}")
    if max_nodes is not None and max_nodes < 1:
        raise ValueError(f"draw_graph: max_nodes must be at least 1, got {max_nodes}")

    kept, omitted = _nearest(roots, max_nodes) if max_nodes is not None else (None, 0)
    # every reachable tensor, inputs and constants too (within the `max_nodes` kept)
    order = topological_order(roots, lambda t: kept is None or id(t) in kept)
    drawing = _Drawing(order, roots, _parameter_names(params), show_data, show_grad, collapse)
    return drawing.digraph(rankdir, omitted=omitted)


def save_graph(root: Tensor | Sequence[Tensor], path: str | Path, **options: Any) -> Path:
    """Draw `root` (options as `draw_graph`) and write it to `path`; returns the path.

    The format follows the suffix: `.svg`, `.png`, `.pdf` (these need Graphviz's `dot`
    program) or `.dot` (the DOT source, no program needed).
    """
    path = Path(path)
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"save_graph: cannot tell the format from {path.name!r}; use one of "
            f"{', '.join(SUFFIX_FORMATS)}"
        )
    graph = draw_graph(root, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        path.write_text(graph.source, encoding="utf-8")
        return path
    if shutil.which("dot") is None:
        raise RuntimeError(_missing_dot_message(path))
    try:
        path.write_bytes(graph.pipe(format=fmt))
    except graphviz.ExecutableNotFound:
        raise RuntimeError(_missing_dot_message(path)) from None
    return path


def _missing_dot_message(path: Path) -> str:
    return (
        f"save_graph: writing {path.name} needs the Graphviz 'dot' program, which is not on "
        "PATH. Install Graphviz: `sudo apt-get install graphviz` (Debian/Ubuntu), "
        "`brew install graphviz` (macOS), `conda install -c conda-forge graphviz`, or from "
        "https://graphviz.org/download/ (Windows). A `.dot` file needs no install."
    )


# ----- walking the graph ---------------------------------------------------------------------
def _nearest(roots: Sequence[Tensor], max_nodes: int) -> tuple[set[int], int]:
    """Ids of the `max_nodes` tensors nearest the roots (breadth first; roots always kept),
    and how many reachable tensors were left out."""
    keep = max(max_nodes, len(roots))
    kept: set[int] = set()
    omitted = 0
    queue = deque(roots)
    seen = {id(r) for r in roots}
    while queue:
        node = queue.popleft()
        if len(kept) < keep:
            kept.add(id(node))
        else:
            omitted += 1
        for parent in node._parents:
            if id(parent) not in seen:
                seen.add(id(parent))
                queue.append(parent)
    return kept, omitted


def _parameter_names(params: Any) -> dict[int, str]:
    """`{id(tensor): dotted name}` from a Module (`named_parameters()`) or a mapping."""
    if params is None:
        return {}
    if hasattr(params, "named_parameters"):
        items: Iterable[tuple[str, Any]] = params.named_parameters()
    elif isinstance(params, Mapping):
        items = params.items()
    else:
        raise TypeError(
            "draw_graph: params must be a Module (with named_parameters()) or a "
            f"{{name: Tensor}} mapping, got {type(params).__name__}"
        )
    names: dict[int, str] = {}
    for name, tensor in items:
        names.setdefault(id(tensor), str(name))
    return names


# ----- text ----------------------------------------------------------------------------------
def _entry_name(entry: Hashable) -> tuple[str, str]:
    """A scope entry as (dotted name, class name); other hashables are shown as they are."""
    if isinstance(entry, tuple) and len(entry) == 2:
        return str(entry[0]), str(entry[1])
    return str(entry), ""


def _entry_label(entry: Hashable) -> str:
    name, cls = _entry_name(entry)
    if name and cls:
        return f"{name} ({cls})"
    return name or cls


def _num(value: float) -> str:
    """A number in 3 significant digits: 0.0123, 1.2e-05, 512, nan, inf."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(n) for n in shape))  # (32, 128), (3,), ()


def _arg(value: Any) -> str:
    """An op argument, short: tuples of ints as shapes, long values cut."""
    ints = isinstance(value, tuple) and all(isinstance(v, (int, np.integer)) for v in value)
    text = _shape(value) if ints else str(value)
    return text if len(text) <= 28 else text[:25] + "..."


def _values(data: np.ndarray) -> str:
    """The values of a tiny tensor, else mean/std/min/max (one line)."""
    if data.size == 0:
        return "empty"
    if data.dtype.kind == "b":
        return f"{int(data.sum())}/{data.size} true" if data.size > 4 else str(data.tolist())
    if data.size <= 4:
        return "[" + ", ".join(_num(float(v)) for v in data.ravel()) + "]"
    as_float = data.astype(np.float64, copy=False)
    return (
        f"mean {_num(float(as_float.mean()))}  std {_num(float(as_float.std()))}  "
        f"[{_num(float(as_float.min()))}, {_num(float(as_float.max()))}]"
    )


def _line(text: str, size: int = 9, bold: bool = False) -> str:
    """One line of an HTML-like label; 9 pt is the node's default font."""
    text = html.escape(text)
    if bold:
        text = f"<B>{text}</B>"
    return text if size == 9 else f'<FONT POINT-SIZE="{size}">{text}</FONT>'


def _html(lines: list[str]) -> str:
    return "<" + "<BR/>".join(lines) + ">"


def _text_color(fill: str) -> str:
    """Black or white text, whichever reads better on `fill` (#rrggbb)."""
    r, g, b = (int(fill[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "#ffffff"


# ----- gradients -----------------------------------------------------------------------------
@dataclass
class _GradInfo:
    """What a gradient says: its norm, NaN/Inf anywhere, all zero, and min/mean/max."""

    norm: float
    nan: bool
    inf: bool
    zero: bool
    stats: tuple[float, float, float] | None = None

    @classmethod
    def of(cls, grad: np.ndarray) -> _GradInfo:
        g = grad.astype(np.float64, copy=False)  # float32 squares overflow past 1e19
        nan, inf = bool(np.isnan(g).any()), bool(np.isinf(g).any())
        return cls(
            norm=float(np.sqrt(np.sum(np.square(g)))) if g.size else 0.0,
            nan=nan,
            inf=inf,
            zero=not nan and not inf and not np.any(g),
            stats=(float(g.min()), float(g.mean()), float(g.max())) if g.size else None,
        )

    @classmethod
    def combined(cls, infos: list[_GradInfo]) -> _GradInfo:
        """The gradient of several tensors taken as one vector (a module's parameters)."""
        return cls(
            norm=math.sqrt(sum(i.norm**2 for i in infos)),
            nan=any(i.nan for i in infos),
            inf=any(i.inf for i in infos),
            zero=all(i.zero for i in infos),
        )

    @property
    def finite(self) -> bool:
        return not (self.nan or self.inf)

    def text(self, stats: bool) -> list[str]:
        if self.nan or self.inf:
            kind = "nan" if self.nan else "inf"
            return [_line(f"grad {kind}", bold=True)]
        if self.zero:
            return [_line("grad 0 (all zero)")]
        lines = [_line(f"grad norm {_num(self.norm)}")]
        if stats and self.stats is not None:
            lo, mean, hi = self.stats
            lines.append(_line(f"min {_num(lo)}  mean {_num(mean)}  max {_num(hi)}", size=8))
        return lines


class _GradScale:
    """Maps a gradient norm to a colour, one colour per decade (or per few decades)."""

    def __init__(self, norms: list[float]) -> None:
        logs = [math.log10(n) for n in norms if n > 0 and math.isfinite(n)]
        self.empty = not logs
        lo = math.floor(min(logs)) if logs else 0
        hi = math.ceil(max(logs)) if logs else 1
        hi = max(hi, lo + 1)
        self.step = math.ceil((hi - lo) / len(GRAD_PALETTE))  # decades per colour
        self.lo = lo
        self.bins = math.ceil((hi - lo) / self.step)
        # spread the colours used over the whole palette, pale to dark (one decade: a middle one)
        last = len(GRAD_PALETTE) - 1
        picks = (
            [round(i * last / (self.bins - 1)) for i in range(self.bins)]
            if self.bins > 1
            else [last // 2]
        )
        self.colors = [GRAD_PALETTE[k] for k in picks]

    def color(self, info: _GradInfo) -> str:
        if not info.finite:
            return NONFINITE_COLOR
        if info.zero:
            return ZERO_GRAD_COLOR
        b = int((math.log10(info.norm) - self.lo) // self.step) if info.norm > 0 else 0
        return self.colors[min(max(b, 0), self.bins - 1)]

    def legend(self) -> str:
        """An HTML-like table: one swatch per colour, largest gradients on top."""
        rows = [
            (
                f'BGCOLOR="{self.colors[i]}"',
                f"1e{self.lo + i * self.step} to 1e{self.lo + (i + 1) * self.step}",
            )
            for i in reversed(range(self.bins))
        ]
        rows += [
            (f'BGCOLOR="{NONFINITE_COLOR}"', "nan / inf"),
            (f'BGCOLOR="{ZERO_GRAD_COLOR}"', "all zero"),
            ('STYLE="dashed" BORDER="1"', "no grad"),
        ]
        cells = "".join(
            f'<TR><TD {swatch} WIDTH="18"> </TD><TD ALIGN="LEFT">{text}</TD></TR>'
            for swatch, text in rows
        )
        return (
            '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="2">'
            f'<TR><TD COLSPAN="2"><B>gradient norm</B></TD></TR>{cells}</TABLE>>'
        )


# ----- the drawing ---------------------------------------------------------------------------
class _Drawing:
    """Decides, for each tensor of `order`, its node(s), its cluster and its edges."""

    def __init__(
        self,
        order: list[Tensor],
        roots: list[Tensor],
        param_names: dict[int, str],
        show_data: bool,
        show_grad: bool | str,
        collapse: bool | int,
    ) -> None:
        self.order = order
        self.index = {id(t): i for i, t in enumerate(order)}
        self.root_ids = {id(r) for r in roots}
        self.param_names = param_names
        self.show_data = show_data
        self.show_grad = show_grad
        self.consumers: dict[int, list[int]] = {}
        for i, t in enumerate(order):
            for p in t._parents:
                if id(p) in self.index:
                    self.consumers.setdefault(id(p), []).append(i)
        self.paths = self._cluster_paths()
        self.groups = self._collapse_groups(collapse)
        self.grads = {
            id(t): _GradInfo.of(t.grad) for t in order if show_grad and t.grad is not None
        }
        self.backward_ran = any(t.grad is not None for t in order)
        self.scale = _GradScale([g.norm for g in self.grads.values()])

    # --- where each tensor goes --------------------------------------------------------------
    def _cluster_paths(self) -> list[ScopePath]:
        """The scope path of each tensor. Parameters are created outside any module call, so
        they go to the module their dotted name names, when one of their consumers ran there."""
        paths = [t._scope for t in self.order]
        by_name: dict[str, ScopePath] = {}
        for scope in paths:
            for depth in range(1, len(scope) + 1):
                by_name.setdefault(_entry_name(scope[depth - 1])[0], scope[:depth])
        for i, t in enumerate(self.order):
            name = self.param_names.get(id(t))
            if t._parents or name is None:
                continue
            owner = by_name.get(name.rpartition(".")[0])
            consumers = self.consumers.get(id(t), [])
            if owner and any(paths[c][: len(owner)] == owner for c in consumers):
                paths[i] = owner
        return paths

    def _collapse_groups(self, collapse: bool | int) -> list[ScopePath | None]:
        """Per tensor, the module path it is folded into (None: drawn as itself)."""
        if collapse is False:
            return [None] * len(self.order)
        if collapse is True:
            used = set(self.paths)
            parents_of_used = {p[:d] for p in used for d in range(1, len(p))}
            groups = [p if p and p not in parents_of_used else None for p in self.paths]
        else:
            depth = int(collapse) + 1  # the root module is the first entry
            groups = [p[:depth] if len(p) >= depth else None for p in self.paths]
        # roots stay visible, so the drawing always ends in the tensor asked for
        return [
            None if id(t) in self.root_ids else g for t, g in zip(self.order, groups, strict=True)
        ]

    # --- nodes ---------------------------------------------------------------------------------
    def _tensor_node(self, i: int) -> tuple[str, dict[str, str]]:
        t = self.order[i]
        name = t.name or self.param_names.get(id(t))
        is_param = not t._parents and t.requires_grad
        if not t._parents and not t.requires_grad and t.size == 1 and name is None:
            # a constant such as the 2.0 in `x * 2.0`: its value says it all
            value = _num(float(t.data.ravel()[0])) if t.dtype.kind in "fiub" else str(t.data)
            return f"t{i}", {"label": value, "shape": "plaintext"}
        lines = []
        if name:
            lines.append(_line(name, size=10, bold=True))
            lines.append(_line(f"{_shape(t.shape)} {t.dtype}"))
        else:
            lines.append(_line(_shape(t.shape), size=10, bold=True))
            lines.append(_line(str(t.dtype)))
        if not t._parents and t._op is not None:
            lines.append(_line(f"from {t._op} (not recorded)", size=8))
        if self.show_data:  # (a tensor whose data backward released has none to show)
            text = "data released" if data_released(t) else _values(t.data)
            lines.append(_line(text, size=8))
        elif id(t) in self.root_ids and t.size == 1:  # the loss: its value is always worth a look
            lines.append(_line(f"value {_values(t.data)[1:-1]}"))
        fill = PARAM_COLOR if is_param else DATA_COLOR if not t.requires_grad else TENSOR_COLOR
        style = ["rounded", "filled"]
        info = self.grads.get(id(t))
        if info is not None:
            lines.extend(info.text(self.show_grad == "stats"))
            fill = self.scale.color(info)
        elif is_param and self.backward_ran and self.show_grad:
            lines.append(_line("no grad"))
            style.append("dashed")
        # shape, style and colours default to a plain tensor's (see `digraph`): DOT stays short
        attrs = {"label": _html(lines)}
        if len(style) > 2:
            attrs["style"] = ",".join(style)
        if fill != TENSOR_COLOR:
            attrs["fillcolor"] = fill
        if _text_color(fill) != "#000000":
            attrs["fontcolor"] = _text_color(fill)
        if is_param:
            attrs.update(color=PARAM_BORDER, penwidth="2")
        if id(t) in self.root_ids:
            attrs.update(color=ROOT_BORDER, penwidth="2.5", peripheries="2")
        return f"t{i}", attrs

    def _op_node(self, i: int) -> tuple[str, dict[str, str]]:
        t = self.order[i]
        args = [
            f"{k}={_arg(v)}"
            for k, v in t._op_args.items()
            if v is not None and v is not False and not (k == "shape" and v == t.shape)
        ]
        lines = [_line(str(t._op), size=10, bold=True)]
        if args:
            lines.append(_line(", ".join(args), size=8))
        attrs = {"label": _html(lines), "shape": "ellipse", "style": "filled"}
        attrs.update(fillcolor=OP_COLOR, margin="0.03,0.01", height="0.3")
        return f"o{i}", attrs

    def _module_node(
        self, k: int, group: ScopePath, members: list[int]
    ) -> tuple[str, dict[str, str]]:
        """One node for a collapsed module: in/out shapes, parameters and their gradients."""
        inside = set(members)
        ins: list[str] = []
        outs: list[str] = []
        params: list[Tensor] = []
        for i in members:
            t = self.order[i]
            for p in t._parents:
                j = self.index.get(id(p))
                if j is not None and j not in inside and _shape(p.shape) not in ins:
                    ins.append(_shape(p.shape))
            leaves_module = any(c not in inside for c in self.consumers.get(id(t), []))
            if leaves_module and _shape(t.shape) not in outs:
                outs.append(_shape(t.shape))
            if not t._parents and t.requires_grad:
                params.append(t)
        lines = [_line(_entry_label(group[-1]), size=10, bold=True)]
        if ins:
            lines.append(_line("in " + "  ".join(ins)))
        if outs:
            lines.append(_line("out " + "  ".join(outs)))
        style = ["rounded", "filled"]
        fill = MODULE_COLOR
        if params:
            count = sum(p.size for p in params)
            plural = "s" if len(params) > 1 else ""
            lines.append(_line(f"{len(params)} parameter{plural}, {count:,} numbers", size=8))
            with_grad = [self.grads[id(p)] for p in params if id(p) in self.grads]
            if with_grad:
                combined = _GradInfo.combined(with_grad)
                lines.extend(combined.text(stats=False))
                fill = self.scale.color(combined)
            missing = [p for p in params if p.grad is None]
            if self.backward_ran and self.show_grad and missing:
                names = [p.name or self.param_names.get(id(p)) or _shape(p.shape) for p in missing]
                lines.append(_line("no grad: " + ", ".join(names), size=8))
                style.append("dashed")
        attrs = {"label": _html(lines), "shape": "box", "style": ",".join(style)}
        attrs.update(fillcolor=fill, fontcolor=_text_color(fill), penwidth="1.5")
        return f"m{k}", attrs

    # --- the Digraph ---------------------------------------------------------------------------
    def digraph(self, rankdir: str, omitted: int) -> graphviz.Digraph:
        placed: dict[ScopePath, list[tuple[str, dict[str, str]]]] = {}
        node_of: dict[int, str] = {}  # tensor index -> id of the node that stands for it
        group_ids: dict[ScopePath, str] = {}
        group_members: dict[ScopePath, list[int]] = {}
        for i, group in enumerate(self.groups):
            if group is not None:
                group_members.setdefault(group, []).append(i)
        for i, t in enumerate(self.order):
            group = self.groups[i]
            if group is not None:
                if group not in group_ids:
                    k = len(group_ids)
                    node = self._module_node(k, group, group_members[group])
                    group_ids[group] = node[0]
                    placed.setdefault(group[:-1], []).append(node)
                node_of[i] = group_ids[group]
                continue
            if t._parents:
                placed.setdefault(self.paths[i], []).append(self._op_node(i))
            node = self._tensor_node(i)
            placed.setdefault(self.paths[i], []).append(node)
            node_of[i] = node[0]

        graph = graphviz.Digraph("npgrad")
        graph.attr(rankdir=rankdir, nodesep="0.2", ranksep="0.3", fontname="Helvetica")
        graph.attr("node", shape="box", style="rounded,filled", fillcolor=TENSOR_COLOR)
        graph.attr("node", fontname="Helvetica", fontsize="9", margin="0.08,0.04")
        graph.attr("edge", fontname="Helvetica", fontsize="8", arrowsize="0.6", color="#555555")
        self._emit_clusters(graph, placed)

        edges: list[tuple[str, str, str]] = []
        seen: set[tuple[str, str]] = set()

        def edge(tail: str, head: str, label: str = "") -> None:
            if tail != head and (tail, head) not in seen:
                seen.add((tail, head))
                edges.append((tail, head, label))

        more = "more" if omitted else None
        for i, t in enumerate(self.order):
            if not t._parents:
                continue
            folded = self.groups[i] is not None
            head = node_of[i] if folded else f"o{i}"
            for p in t._parents:
                j = self.index.get(id(p))
                if j is None:
                    if more:
                        edge(more, head)
                    continue
                label = ""  # shapes are in the nodes; edges only say where broadcasting is
                if not folded and t._op in BROADCASTING_OPS and p.shape != t.shape and p.size > 1:
                    label = f"{_shape(p.shape)} → {_shape(t.shape)}"
                edge(node_of[j], head, label)
            if not folded:
                edge(f"o{i}", f"t{i}")
        if more:
            graph.node(more, f"... {omitted} more", shape="note", fontsize="9", style="dashed")
        for tail, head, label in edges:
            if label:
                graph.edge(tail, head, label=" " + label)
            else:
                graph.edge(tail, head)
        for tail, head in self._layout_edges(node_of):
            graph.edge(tail, head, style="invis")
        if self.grads and not self.scale.empty:
            graph.node("legend", self.scale.legend(), shape="plaintext", fontsize="8")
        return graph

    def _layout_edges(self, node_of: dict[int, str]) -> list[tuple[str, str]]:
        """Invisible edges from the tensors entering a module to its parameters (and other
        leaves), so the module's box starts below the box that made its input. Without them
        Graphviz ranks a parameter just above its op, beside the previous module's output,
        and the module boxes zig-zag left and right."""
        entries: dict[ScopePath, list[int]] = {}
        for i, t in enumerate(self.order):
            path = self.paths[i]
            if not path or not t._parents or self.groups[i] is not None:
                continue
            for p in t._parents:
                j = self.index.get(id(p))
                if j is None or self.paths[j][: len(path)] == path or not p._parents:
                    continue
                if j not in entries.setdefault(path, []):
                    entries[path].append(j)
        layout = []
        for i, t in enumerate(self.order):
            if t._parents or self.groups[i] is not None or id(t) in self.root_ids:
                continue
            layout.extend((node_of[j], node_of[i]) for j in entries.get(self.paths[i], []))
        return layout

    def _emit_clusters(
        self, graph: graphviz.Digraph, placed: dict[ScopePath, list[tuple[str, dict[str, str]]]]
    ) -> None:
        """Nodes at their scope path, nested `cluster_k` subgraphs for the modules."""
        children: dict[ScopePath, list[ScopePath]] = {}
        numbers: dict[ScopePath, int] = {}
        for path in placed:  # insertion order: the order tensors first appear in
            for depth in range(1, len(path) + 1):
                prefix = path[:depth]
                if prefix not in numbers:
                    numbers[prefix] = len(numbers)
                    children.setdefault(prefix[:-1], []).append(prefix)
        # iterative depth-first emission; a subgraph is added to its parent when closed
        for node_id, attrs in placed.get((), []):
            graph.node(node_id, **attrs)
        stack: list[tuple[ScopePath, graphviz.Digraph, graphviz.Digraph | None, bool]] = [
            (p, graph, None, False) for p in reversed(children.get((), []))
        ]
        while stack:
            path, parent, sub, done = stack.pop()
            if done:
                parent.subgraph(sub)
                continue
            sub = graphviz.Digraph(name=f"cluster_{numbers[path]}")
            color = CLUSTER_COLORS[(len(path) - 1) % len(CLUSTER_COLORS)]
            label = graphviz.nohtml(_entry_label(path[-1]))  # "<lambda>" is not HTML
            sub.attr(label=label, labeljust="l", style="rounded,filled")
            sub.attr(fillcolor=color, color="#999999", fontsize="10", fontname="Helvetica")
            for node_id, attrs in placed.get(path, []):
                sub.node(node_id, **attrs)
            stack.append((path, parent, sub, True))
            stack.extend((p, sub, None, False) for p in reversed(children.get(path, [])))
