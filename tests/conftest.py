"""What every tier shares: Hypothesis without its timing checks.

By default Hypothesis fails an example that takes more than 200 ms (``DeadlineExceeded``, or ``Flaky`` when the
example then runs faster again) and a test whose data takes long to generate (``HealthCheck.too_slow``). Both
measure the machine as much as the code: on two shared cores under a second test run, an example of a
millisecond can wait hundreds of milliseconds for a core. The properties are what the tests check; how fast they
run is the benchmarks' business (``bench/``). Loaded here, before any test module builds its ``@settings``, so
that those inherit it.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("kefu", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kefu")
