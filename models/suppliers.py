"""The supplier port (contract 12): every fulfilment question goes to one supplier, chosen by name
(OCTOPUS_SUPPLIER). The `mock` supplier answers as the sandbox does, following each product's
`mock` scenario (12.1). A real supplier is another class with the same methods, registered here."""


class MockSupplier:
    """Every valid request succeeds, unless the product's scenario says otherwise."""

    name = "mock"

    def voucher_in_stock(self, product, denomination, quantity):
        """The supplier's stock check: `in_stock: false` says no."""
        return (product.mock or {}).get("in_stock", True) is not False


SUPPLIERS = {MockSupplier.name: MockSupplier}


def supplier_named(name):
    return SUPPLIERS[name]()
