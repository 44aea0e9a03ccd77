"""Workflows that ship with Kadence: the ones `kadence demo` runs (account opening, and the flagship
OrderProcessing parent with Payment, Inventory and Shipping children). `examples/` in the repository
runs them against a server."""
