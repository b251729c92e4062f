"""chatbus's development and test tooling, kept out of every service image.

``./dev`` and the ``chatbus`` command (:mod:`chatbus_dev.cli`), the local runner
(:mod:`chatbus_dev.local`, :mod:`chatbus_dev.cluster`), the NATS and Redis servers it and the
tests start (:mod:`chatbus_dev.servers`, :mod:`chatbus_dev.nats_server`), the offline model
(:mod:`chatbus_dev.offline_llm`) and the pytest plugin (:mod:`chatbus_dev.testing`). It may
import the ``chatbus`` library and the services; they never import it (``lint-imports``).
"""
