"""Geometry: local metric projections, polyline preparation, geodesy helpers (metres, degrees)."""
