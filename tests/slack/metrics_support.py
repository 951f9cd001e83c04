"""Reading a bot's /metrics the way Prometheus does."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape of /metrics: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels` (0 if none)."""
        return sum(
            value
            for sample_name, sample_labels, value in self._samples
            if sample_name == name and labels.items() <= sample_labels.items()
        )

    def has(self, name: str) -> bool:
        return any(sample_name == name for sample_name, _, _ in self._samples)


def scrape(base_url: str) -> Scrape:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


def wait_for_metric(
    base_url: str, condition: Callable[[Scrape], bool], timeout: float = 30
) -> Scrape:
    """Scrape until `condition` holds: the bot records an answer just after posting it."""
    deadline = time.monotonic() + timeout
    while True:
        current = scrape(base_url)
        if condition(current) or time.monotonic() > deadline:
            return current
        time.sleep(0.1)
