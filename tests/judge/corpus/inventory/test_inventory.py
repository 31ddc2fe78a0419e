import pytest
from inventory import Inventory


def test_receive_and_ship():
    inv = Inventory()
    inv.receive("a", 5)
    inv.receive("a", 2)
    assert inv.ship("a", 3) == 4
    assert inv.ship("a", 4) == 0


def test_invalid_quantities():
    inv = Inventory()
    with pytest.raises(ValueError):
        inv.receive("a", 0)
    inv.receive("a", 1)
    with pytest.raises(ValueError):
        inv.ship("a", 2)
    with pytest.raises(ValueError):
        inv.ship("zzz", 1)


def test_reorder_points():
    inv = Inventory()
    inv.receive("a", 5)
    inv.receive("b", 1)
    inv.set_reorder_point("a", 5)
    inv.set_reorder_point("b", 0)
    inv.set_reorder_point("c", 2)
    assert inv.to_reorder() == ["a", "c"]
    with pytest.raises(ValueError):
        inv.set_reorder_point("a", -1)


def test_value():
    inv = Inventory()
    inv.receive("a", 2)
    inv.receive("b", 3)
    inv.ship("b", 3)
    assert inv.value({"a": 2.5, "b": 100.0}) == 5.0
