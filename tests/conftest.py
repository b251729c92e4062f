pytest_plugins = ["chatbus.testing", "tests.collab.collab_harness"]
