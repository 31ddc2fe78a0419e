import pytest
from cart import Cart


def test_add_and_subtotal():
    c = Cart()
    c.add("pen", 1.5, 2)
    c.add("pen", 1.5)
    assert c.items["pen"] == (1.5, 3)
    assert c.subtotal() == 4.5


def test_add_rejects_bad_values():
    c = Cart()
    with pytest.raises(ValueError):
        c.add("x", -1)
    with pytest.raises(ValueError):
        c.add("x", 1, 0)


def test_remove():
    c = Cart()
    c.add("pen", 2.0, 3)
    c.remove("pen")
    assert c.items["pen"] == (2.0, 2)
    c.remove("pen", 5)
    assert "pen" not in c.items


def test_bulk_discount():
    c = Cart()
    c.add("clip", 1.0, 10)
    assert c.subtotal() == 9.0
    c2 = Cart()
    c2.add("clip", 1.0, 9)
    assert c2.subtotal() == 9.0


def test_shipping_and_total():
    c = Cart()
    assert c.shipping() == 0.0
    c.add("book", 20.0)
    assert c.shipping() == 4.99
    assert c.total() == 24.99
    c.add("mag", 30.0)
    assert c.subtotal() == 50.0
    assert c.shipping() == 4.99
    c.add("pen", 0.01)
    assert c.shipping() == 0.0
