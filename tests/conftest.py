pytest_plugins = ["tests.servers", "tests.crm_fixtures"]
