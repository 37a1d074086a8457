"""The package's public names: sorted, importable, and nothing private leaks into __all__."""

import cmvoice


def test_every_name_in_all_is_importable_and_public() -> None:
    for name in cmvoice.__all__:
        assert hasattr(cmvoice, name), name
        assert not name.startswith("_") or name == "__version__"


def test_all_is_sorted_so_additions_are_easy_to_review() -> None:
    assert cmvoice.__all__ == sorted(cmvoice.__all__)
