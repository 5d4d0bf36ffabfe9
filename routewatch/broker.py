"""Mosquitto settings every broker config that routewatch writes shares (the private
brokers of ``routewatch.services`` and the ``routewatch mqtt auth`` snippet). No imports:
the service runner reads this without loading the engine."""

#: Mosquitto keeps only 1000 messages (max_queued_messages) for a client beyond its in-flight
#: window and drops the rest without telling anyone: the engine stops taking messages
#: while its batch waits for the database (backpressure), so a slow commit, a database
#: outage or a restart would lose pings. A million covers ~8 minutes of a 2,000 msg/s
#: fleet (a 10,000-vehicle fleet at one fix per 5 s) in a few hundred MB of the broker's
#: memory. Mosquitto applies the limit to every client.
BROKER_QUEUE_CONFIG = "max_queued_messages 1000000"
