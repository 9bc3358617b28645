from __future__ import annotations


def pytest_terminal_summary(terminalreporter: object) -> None:
    from tests.tally import terminal_summary

    terminal_summary(terminalreporter)
