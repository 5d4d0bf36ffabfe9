"""routewatch: GPS telematics ingestion and route-compliance engine."""

__version__ = "0.1.0"
