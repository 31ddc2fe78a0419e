"""Unweighted graphs as adjacency dicts."""

from collections import deque


def add_edge(graph, a, b):
    graph.setdefault(a, set()).add(b)
    graph.setdefault(b, set()).add(a)
    return graph


def shortest_path(graph, start, goal):
    if start not in graph or goal not in graph:
        return None
    prev = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = []
            while node is not None:
                path.append(node)
                node = prev[node]
            return path[::-1]
        for nxt in sorted(graph[node]):
            if nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    return None


def components(graph):
    seen = set()
    count = 0
    for node in graph:
        if node in seen:
            continue
        count += 1
        stack = [node]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(graph[n] - seen)
    return count


def degree(graph, node):
    return len(graph.get(node, ()))
