"""The package's public names: sorted, importable, and nothing private leaks into __all__."""

import cmvoice


def test_every_name_in_all_is_importable_and_public() -> None:
    for name in cmvoice.__all__:
        assert hasattr(cmvoice, name), name
        assert not name.startswith("_") or name == "__version__"


def test_all_is_sorted_so_additions_are_easy_to_review() -> None:
    assert cmvoice.__all__ == sorted(cmvoice.__all__)


def test_the_visibility_timeout_outlasts_every_countdown_and_task() -> None:
    from cmvoice.config import Settings
    from cmvoice.schedule import MAX_COUNTDOWN_S
    from cmvoice.worker import RETRY_ON_OUTAGE, VISIBILITY_TIMEOUT_S

    defaults = Settings(broker_url="redis://127.0.0.1:1/0")
    longest_dispatch = defaults.max_rate_wait + defaults.connect_timeout + defaults.http_timeout
    assert MAX_COUNTDOWN_S + longest_dispatch < VISIBILITY_TIMEOUT_S
    assert RETRY_ON_OUTAGE["retry_backoff_max"] + longest_dispatch < VISIBILITY_TIMEOUT_S
