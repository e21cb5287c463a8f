"""The routelang runtime: routes requests by a compiled router."""
