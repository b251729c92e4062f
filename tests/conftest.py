pytest_plugins = ["chatbus.testing"]
