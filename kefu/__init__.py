"""kefu's platform kit: the command line, the embedded dev stack and the operational plumbing
(settings, logs, health, metrics, Kafka and database wiring) that every service uses.

Services never import each other; they share ``contracts`` (what crosses Kafka) and this kit
(how a service runs).
"""
