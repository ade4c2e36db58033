"""The container adapters and the per-dispatch scope (private; the public
names are in `anycqrs.container`)."""
