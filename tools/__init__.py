"""The tools above the services: the ``kefu`` command, the dev stack, embedded servers, the demo, config checks,
migrations. They compose the services (``tools.assemble``); nothing below imports them."""
