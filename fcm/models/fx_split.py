"""Split any traceable torchvision classifier at a named graph node (torch.fx).

``split_at(model, "layer2")`` returns the edge half (input → the node's output) and the cloud half (that output →
logits) as ``torch.fx.GraphModule``s sharing the model's parameters. Node names are those of torchvision's
``get_graph_node_names`` (the names ``create_feature_extractor`` accepts); a module name such as ``layer2`` means the
module's last node. A node is a valid cut only when everything after it depends on the input through that node
alone (no skip connection jumps over it); otherwise the error names a node that does.

As torchvision's ``create_feature_extractor`` does, the model is traced twice, in train and in eval mode: tracing
bakes ``self.training`` branches into the graph (stochastic depth vanishes from the eval graph, for one), so each half
is a ``DualGraphModule`` whose ``.train()`` / ``.eval()`` swaps in the matching graph. The halves are returned in eval
mode, running exactly the graph a single eval-mode trace gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches
from typing import TYPE_CHECKING

from torch import fx, nn

from fcm.errors import UnknownNameError

if TYPE_CHECKING:  # torchvision is imported when a split is made, not when the registry is
    from torchvision.models.feature_extraction import DualGraphModule


@dataclass(frozen=True)
class GraphSplit:
    """The two halves of a model; they share the model's submodules (hence its parameters and buffers)."""

    front: DualGraphModule
    back: DualGraphModule
    node: str

    def train(self, mode: bool = True) -> None:
        """Switch both halves to their train-mode (or eval-mode) graph and their modules to that mode."""
        self.front.train(mode)
        self.back.train(mode)


def node_names(model: nn.Module) -> list[str]:
    """Valid split-node names (eval-mode graph) of ``model``."""
    from torchvision.models.feature_extraction import get_graph_node_names

    return list(get_graph_node_names(model)[1])


def _trace(model: nn.Module, train: bool) -> tuple[fx.Graph, dict[fx.Node, str]]:
    from torchvision.models.feature_extraction import NodePathTracer

    tracer = NodePathTracer()
    graph = tracer.trace(model.train(train))
    return graph, tracer.node_to_qualname


def _resolve(name: str, graph: fx.Graph, qualnames: dict[fx.Node, str]) -> fx.Node:
    matches = [
        n for n in graph.nodes if n in qualnames and (qualnames[n] == name or qualnames[n].startswith(name + "."))
    ]
    if not matches:
        known = sorted(set(qualnames.values()))
        modules = {q.rsplit(".", i)[0] for q in known for i in range(q.count(".") + 1)}
        near = get_close_matches(name, sorted(modules), n=5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise UnknownNameError(
            f"no node {name!r} in {len(known)} graph nodes{hint} (valid names: {', '.join(known[:40])}"
            f"{', …' if len(known) > 40 else ''})"
        )
    return matches[-1]


def split_at(model: nn.Module, node_name: str) -> GraphSplit:
    """Cut ``model`` after node ``node_name``; see the module docstring. ``model`` is left in eval mode."""
    from torchvision.models.feature_extraction import DualGraphModule

    # eval first: its graph is the one inference runs, so its errors are the ones to report
    eval_front, eval_back = _split_graph(model, *_trace(model, train=False), node_name)
    train_front, train_back = _split_graph(model, *_trace(model, train=True), node_name)
    model.eval()
    halves = [DualGraphModule(model, train, ev) for train, ev in ((train_front, eval_front), (train_back, eval_back))]
    for half in halves:
        half.eval()
    return GraphSplit(halves[0], halves[1], node_name)


def _split_graph(
    model: nn.Module, graph: fx.Graph, qualnames: dict[fx.Node, str], node_name: str
) -> tuple[fx.Graph, fx.Graph]:
    """The graphs of the edge half (input → cut) and of the cloud half (cut → output) of one traced graph."""
    cut = _resolve(node_name, graph, qualnames)
    output = next(n for n in graph.nodes if n.op == "output")

    # nodes the output needs, walking back but not through the cut
    needed: set[fx.Node] = set()
    stack = [output]
    while stack:
        node = stack.pop()
        if node in needed or node is cut:
            continue
        if node.op == "placeholder":
            users = [qualnames.get(u, u.name) for u in node.users]
            raise UnknownNameError(
                f"node {node_name!r} is not a clean cut: the part after it also reads the model input "
                f"(through {users[:3]}); a skip connection jumps over it. Choose a node that every later path "
                "passes through, such as a block's output"
            )
        needed.add(node)
        stack.extend(node.all_input_nodes)
    # everything needed must come after the cut, else a skip connection jumps over it
    order = {n: i for i, n in enumerate(graph.nodes)}
    early = [n for n in needed if order[n] < order[cut] and n.op not in ("get_attr",)]
    if early:
        raise UnknownNameError(
            f"node {node_name!r} is not a clean cut: {qualnames.get(early[0], early[0].name)!r} before it is "
            "used after it (a skip connection jumps over the cut)"
        )

    back_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {cut: back_graph.placeholder("features")}
    for node in graph.nodes:
        if node in needed:
            env[node] = back_graph.node_copy(node, lambda n: env[n])
    back_graph.lint()

    front_graph = fx.Graph()
    fenv: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        fenv[node] = front_graph.node_copy(node, lambda n: fenv[n])
        if node is cut:
            break
    front_graph.output(fenv[cut])
    front = fx.GraphModule(model, front_graph)  # dead-code elimination asks the owning module which calls are pure
    front.graph.eliminate_dead_code()
    return front.graph, back_graph
