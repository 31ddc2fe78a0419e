"""Stock keeping with reorder points."""


class Inventory:
    def __init__(self):
        self.stock = {}
        self.reorder = {}

    def receive(self, sku, qty):
        if qty <= 0:
            raise ValueError("quantity must be positive")
        self.stock[sku] = self.stock.get(sku, 0) + qty

    def ship(self, sku, qty):
        have = self.stock.get(sku, 0)
        if qty > have:
            raise ValueError(f"only {have} of {sku} in stock")
        self.stock[sku] = have - qty
        return self.stock[sku]

    def set_reorder_point(self, sku, level):
        if level < 0:
            raise ValueError("reorder level must be >= 0")
        self.reorder[sku] = level

    def to_reorder(self):
        return sorted(sku for sku, level in self.reorder.items() if self.stock.get(sku, 0) <= level)

    def value(self, prices):
        return sum(prices[sku] * qty for sku, qty in self.stock.items() if qty > 0)
