import pytest
from lru import LRUCache


def test_put_get():
    c = LRUCache(2)
    c.put("a", 1)
    assert c.get("a") == 1
    assert c.get("zz", "none") == "none"


def test_eviction_order():
    c = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.get("a")
    c.put("c", 3)
    assert c.get("b") is None
    assert c.get("a") == 1
    assert c.get("c") == 3
    assert len(c) == 2


def test_update_refreshes():
    c = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.put("a", 10)
    c.put("c", 3)
    assert c.get("a") == 10
    assert c.get("b") is None


def test_capacity_validation():
    with pytest.raises(ValueError):
        LRUCache(0)
    assert len(LRUCache(1)) == 0


def test_hit_rate():
    c = LRUCache(1)
    assert c.hit_rate() == 0.0
    c.put("a", 1)
    c.get("a")
    c.get("b")
    c.get("a")
    assert c.hit_rate() == pytest.approx(2 / 3)
    assert c.hits == 2 and c.misses == 1
