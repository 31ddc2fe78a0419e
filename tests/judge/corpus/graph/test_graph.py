from graph import add_edge, components, degree, shortest_path


def _g():
    g = {}
    for a, b in [(1, 2), (2, 3), (3, 4), (1, 5), (6, 7)]:
        add_edge(g, a, b)
    return g


def test_add_edge_is_undirected():
    g = add_edge({}, "a", "b")
    assert g == {"a": {"b"}, "b": {"a"}}


def test_shortest_path():
    g = _g()
    assert shortest_path(g, 1, 4) == [1, 2, 3, 4]
    assert shortest_path(g, 5, 3) == [5, 1, 2, 3]
    assert shortest_path(g, 2, 2) == [2]


def test_no_path():
    g = _g()
    assert shortest_path(g, 1, 7) is None
    assert shortest_path(g, 1, 99) is None


def test_components():
    assert components(_g()) == 2
    assert components({}) == 0


def test_degree():
    g = _g()
    assert degree(g, 1) == 2
    assert degree(g, 4) == 1
    assert degree(g, 42) == 0
