"""Incrementally maintained reader index of a Graph, for the passes' rewrites.

`Graph.consumers()` / `Graph.producers()` / `Graph.replace_uses()` each walk the whole graph;
a pass calling them once per rewrite is quadratic. `Uses` builds the maps once and keeps
them in step with the rewrites made through it, so each rewrite costs only the readers it
touches. The maps match what the Graph methods would return at that moment: readers are
counted once per occurrence in a node's inputs, dead nodes included (as consumers() does).
"""

from __future__ import annotations

from ..graph.ir import Graph, Node


def _remove_one(nodes: list[Node], n: Node) -> None:
    for k, m in enumerate(nodes):
        if m is n:
            del nodes[k]
            return
    raise ValueError(f"{n.name} is not a reader")


class Uses:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.readers: dict[str, list[Node]] = {}
        self.producer: dict[str, Node] = {}
        self.dropped: set[int] = set()  # id() of the nodes passed to drop_node
        for n in graph.nodes:
            self.producer[n.name] = n
            for i in n.inputs:
                self.readers.setdefault(i, []).append(n)

    def count(self, name: str) -> int:
        """len(graph.consumers().get(name, []))."""
        r = self.readers.get(name)
        return len(r) if r else 0

    def private(self, name: str) -> bool:
        """Read by exactly one node input and not a graph output."""
        return self.count(name) == 1 and name not in self.graph.outputs

    def add_node(self, n: Node) -> None:
        """Register a node the caller puts into graph.nodes."""
        self.producer[n.name] = n
        for i in n.inputs:
            self.readers.setdefault(i, []).append(n)

    def drop_node(self, n: Node) -> None:
        """Forget a node the caller takes out of graph.nodes."""
        self.dropped.add(id(n))
        if self.producer.get(n.name) is n:
            del self.producer[n.name]
        for i in n.inputs:
            _remove_one(self.readers[i], n)

    def set_inputs(self, n: Node, inputs: list[str]) -> None:
        for i in n.inputs:
            _remove_one(self.readers[i], n)
        n.inputs = list(inputs)
        for i in n.inputs:
            self.readers.setdefault(i, []).append(n)

    def replace_uses(self, old: str, new: str) -> None:
        """graph.replace_uses(old, new), touching only old's readers."""
        if old == new:
            return
        readers = self.readers.pop(old, [])
        seen: set[int] = set()
        for n in readers:
            if id(n) not in seen:
                seen.add(id(n))
                n.inputs = [new if i == old else i for i in n.inputs]
        if readers:
            self.readers.setdefault(new, []).extend(readers)
        g = self.graph
        if old in g.outputs:
            g.outputs = [new if o == old else o for o in g.outputs]
