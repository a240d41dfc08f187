"""The handoff tests' own configuration: nothing of Darkroom's, so that they run from the sdist too."""


def pytest_configure(config):
    config.addinivalue_line("markers", "gunicorn: the test serves an app with a real gunicorn")
