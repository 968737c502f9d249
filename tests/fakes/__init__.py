"""One fake per external API the services call, shared by the unit tests (in process, through
``httpx.ASGITransport``) and the integration tests (served over HTTP on loopback)."""
