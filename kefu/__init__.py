"""kefu's runtime kit: what every service runs on (settings, logs, the app skeleton and its error mapping, health,
metrics, Kafka and database wiring, the outbox, authentication, the configuration file and the business calendar).

It sits below the services and above ``contracts`` (what crosses Kafka); the tools that compose and run the services
(the ``kefu`` command, the dev stack, migrations) are ``tools``. Services never import each other. docs/layout.md
draws the map; ``lint-imports`` (.importlinter) keeps it true.
"""
