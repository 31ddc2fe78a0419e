"""A shopping cart with quantity discounts."""


class Cart:
    FREE_SHIPPING_OVER = 50.0
    SHIPPING = 4.99

    def __init__(self):
        self.items = {}

    def add(self, name, price, qty=1):
        if price < 0 or qty < 1:
            raise ValueError("bad price or quantity")
        _, old_qty = self.items.get(name, (price, 0))
        self.items[name] = (price, old_qty + qty)

    def remove(self, name, qty=1):
        price, have = self.items[name]
        if qty >= have:
            del self.items[name]
        else:
            self.items[name] = (price, have - qty)

    def subtotal(self):
        total = 0.0
        for price, qty in self.items.values():
            line = price * qty
            if qty >= 10:
                line *= 0.9
            total += line
        return round(total, 2)

    def shipping(self):
        if not self.items or self.subtotal() > self.FREE_SHIPPING_OVER:
            return 0.0
        return self.SHIPPING

    def total(self):
        return round(self.subtotal() + self.shipping(), 2)
