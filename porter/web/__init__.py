"""The HTTP edge: Starlette routes. Only this package imports starlette."""
